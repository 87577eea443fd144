package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse/api"
)

func driversCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "drivers",
		Usage: "list datasource drivers and show their config and tables",
		Subcommands: []*ucli.Command{
			{
				Name:  "list",
				Usage: "list the drivers",
				Action: func(c *ucli.Context) error {
					_, cl, err := clientArgs(c)
					if err != nil {
						return err
					}
					ds, err := cl.Drivers(c.Context)
					if err != nil {
						return err
					}
					if jsonOut(c) {
						return printJSON(c, ds)
					}
					var rows [][]string
					for _, d := range ds {
						rows = append(rows, []string{d.ID, d.Description})
					}
					printTable(c.App.Writer, "DRIVER\tDESCRIPTION", rows)
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "show a driver's config fields (required, secret) and tables",
				ArgsUsage: "ID",
				Action: func(c *ucli.Context) error {
					a, cl, err := clientArgs(c, "ID")
					if err != nil {
						return err
					}
					raw, err := cl.Driver(c.Context, a[0])
					if err != nil {
						return err
					}
					if jsonOut(c) {
						return printRaw(c, raw)
					}
					var info struct {
						ID, Description string
						Config          []struct {
							Name, Type, Description string
							Required, Secret        bool
						}
						Tables []struct {
							Name    string
							Columns []string
						}
					}
					if err := json.Unmarshal(raw, &info); err != nil {
						return err
					}
					w := c.App.Writer
					fmt.Fprintf(w, "%s: %s\n\nconfig:\n", info.ID, info.Description)
					var rows [][]string
					for _, f := range info.Config {
						rows = append(rows, []string{"  " + f.Name, f.Type, strconv.FormatBool(f.Required), strconv.FormatBool(f.Secret), f.Description})
					}
					printTable(w, "  KEY\tTYPE\tREQUIRED\tSECRET\tDESCRIPTION", rows)
					fmt.Fprintf(w, "\ntables:\n")
					for _, t := range info.Tables {
						fmt.Fprintf(w, "  %s (%s)\n", t.Name, strings.Join(t.Columns, ", "))
					}
					return nil
				},
			},
		},
	}
}

func datasourcesCommand() *ucli.Command {
	secrets := func() ucli.Flag { return &ucli.BoolFlag{Name: "show-secrets", Usage: "show secret config values"} }
	return &ucli.Command{
		Name:  "datasources",
		Usage: "add, list, change and remove datasources",
		Subcommands: []*ucli.Command{
			{
				Name:  "add",
				Usage: "add a datasource; it publishes its tables as the service named NAME",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "name", Usage: "the datasource's (and its service's) name"},
					&ucli.StringFlag{Name: "driver", Usage: "the driver (see drivers list)"},
					&ucli.StringFlag{Name: "description"},
					&ucli.StringFlag{Name: "config", Usage: "the driver's config, a JSON object", Value: "{}"},
					&ucli.BoolFlag{Name: "disabled", Usage: "add it without running it"},
				},
				Action: datasourcesAdd,
			},
			{Name: "list", Usage: "list datasources", Flags: []ucli.Flag{secrets()}, Action: datasourcesList},
			{Name: "get", Usage: "show a datasource", ArgsUsage: "ID|NAME", Flags: []ucli.Flag{secrets()}, Action: datasourcesGet},
			{Name: "status", Usage: "show where a datasource runs and how its source is", ArgsUsage: "ID|NAME", Action: datasourcesStatus},
			{
				Name:      "update",
				Usage:     "replace a datasource's config and/or enable or disable it",
				ArgsUsage: "ID|NAME",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "config", Usage: "the new config, a JSON object (\"<hidden>\" keeps a stored secret)"},
					&ucli.StringFlag{Name: "enabled", Usage: "true or false"},
				},
				Action: datasourcesUpdate,
			},
			{Name: "delete", Usage: "remove a datasource", ArgsUsage: "ID|NAME", Action: datasourcesDelete},
		},
	}
}

// jsonObject parses a flag's JSON object.
func jsonObject(flag, s string) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, usagef("--%s must be one JSON object, got %q", flag, s)
	}
	return m, nil
}

func datasourcesAdd(c *ucli.Context) error {
	if _, err := args(c); err != nil {
		return err
	}
	if c.String("name") == "" || c.String("driver") == "" {
		return usagef("datasources add needs --name and --driver")
	}
	cfg, err := jsonObject("config", c.String("config"))
	if err != nil {
		return err
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	enabled := !c.Bool("disabled")
	ds, err := cl.AddDatasource(c.Context, api.AddDatasourceRequest{Name: c.String("name"), Driver: c.String("driver"), Description: c.String("description"), Config: cfg, Enabled: &enabled})
	if err != nil {
		return err
	}
	return done(c, ds, "added datasource %s (%s), driver %s", ds.Name, ds.ID, ds.Driver)
}

func datasourcesList(c *ucli.Context) error {
	_, cl, err := clientArgs(c)
	if err != nil {
		return err
	}
	ds, err := cl.Datasources(c.Context, c.Bool("show-secrets"))
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, ds)
	}
	var rows [][]string
	for _, d := range ds {
		cfg, _ := marshalText(d.Config, "")
		rows = append(rows, []string{d.Name, d.ID, d.Driver, strconv.FormatBool(d.Enabled), string(cfg)})
	}
	printTable(c.App.Writer, "NAME\tID\tDRIVER\tENABLED\tCONFIG", rows)
	return nil
}

func datasourcesGet(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID|NAME")
	if err != nil {
		return err
	}
	d, err := cl.Datasource(c.Context, a[0], c.Bool("show-secrets"))
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, d)
	}
	cfg, _ := marshalText(d.Config, "  ")
	fmt.Fprintf(c.App.Writer, "name: %s\nid: %s\ndriver: %s\ndescription: %s\ntype: %s\nenabled: %t\nconfig:\n  %s\n", d.Name, d.ID, d.Driver, d.Description, d.Type, d.Enabled, cfg)
	return nil
}

func datasourcesStatus(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID|NAME")
	if err != nil {
		return err
	}
	st, err := cl.DatasourceStatus(c.Context, a[0])
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, st)
	}
	fmt.Fprintf(c.App.Writer, "%s (%s): enabled %t, node %s, incarnation %d, running %t, healthy %t, polls %d, failures %d\n",
		st.Name, st.ID, st.Enabled, orDash(st.Node), st.Incarnation, st.Running, st.Healthy, st.Polls, st.Failures)
	if st.LastSuccess != nil {
		fmt.Fprintf(c.App.Writer, "last good poll: %s (%s ago)\n", st.LastSuccess.Format(time.RFC3339), time.Since(*st.LastSuccess).Round(time.Millisecond))
	}
	if st.LastError != "" {
		fmt.Fprintf(c.App.Writer, "last error: %s\n", st.LastError)
	}
	return nil
}

func datasourcesUpdate(c *ucli.Context) error {
	a, err := args(c, "ID|NAME")
	if err != nil {
		return err
	}
	var req api.UpdateDatasourceRequest
	if c.IsSet("config") {
		if req.Config, err = jsonObject("config", c.String("config")); err != nil {
			return err
		}
	}
	if c.IsSet("enabled") {
		b, err := strconv.ParseBool(c.String("enabled"))
		if err != nil {
			return usagef("--enabled %q is not true or false", c.String("enabled"))
		}
		req.Enabled = &b
	}
	if req.Config == nil && req.Enabled == nil {
		return usagef("datasources update needs --config and/or --enabled")
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	d, err := cl.UpdateDatasource(c.Context, a[0], req)
	if err != nil {
		return err
	}
	return done(c, d, "updated datasource %s", d.Name)
}

func datasourcesDelete(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID|NAME")
	if err != nil {
		return err
	}
	if err := cl.DeleteDatasource(c.Context, a[0]); err != nil {
		return err
	}
	return done(c, map[string]string{"deleted": a[0]}, "deleted datasource %s", a[0])
}

// marshalText is JSON for people: "<hidden>" stays as it is, not escaped
// for HTML; with prefix, indented.
func marshalText(v any, prefix string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if prefix != "" {
		enc.SetIndent(prefix, "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
