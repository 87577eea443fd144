package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse/api"
	"dse.dev/dse/dse/table"
)

func servicesCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "services",
		Usage: "list, create and delete services",
		Subcommands: []*ucli.Command{
			{Name: "list", Usage: "list every service (DataServiceInfo)", Action: servicesList},
			{Name: "create", Usage: "create a service whose tables are set by publish, owned by the addressed node and kept on R nodes", ArgsUsage: "ID", Action: servicesCreate,
				Flags: []ucli.Flag{&ucli.IntFlag{Name: "replicas", Usage: "how many nodes keep its tables (default 3, or every node when there are fewer)"}}},
			{Name: "show", Usage: "a service's owner, incarnation, replicas and tables", ArgsUsage: "ID", Action: servicesShow},
			{Name: "delete", Usage: "delete a service wherever it runs", ArgsUsage: "ID", Action: servicesDelete},
		},
	}
}

func servicesList(c *ucli.Context) error {
	_, cl, err := clientArgs(c)
	if err != nil {
		return err
	}
	infos, err := cl.Services(c.Context)
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, infos)
	}
	var rows [][]string
	for _, i := range infos {
		rows = append(rows, []string{i.ServiceID, orDash(i.NodeID), orDash(strings.Join(i.PublishedTables, ",")), orDash(strings.Join(i.SubscribedTables, ",")), orDash(strings.Join(i.RPCEndpointsInfo, ","))})
	}
	printTable(c.App.Writer, "SERVICE\tNODE\tPUBLISHES\tWITH SUBSCRIBERS\tRPC", rows)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func servicesCreate(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID")
	if err != nil {
		return err
	}
	r := c.Int("replicas")
	if c.IsSet("replicas") && (r < 1 || r > 9) {
		return usagef("--replicas %d: want 1 to 9", r)
	}
	info, err := cl.CreateService(c.Context, a[0], r)
	if err != nil {
		return err
	}
	return done(c, info, "created service %s, owned by node %s", info.ServiceID, info.NodeID)
}

func servicesShow(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID")
	if err != nil {
		return err
	}
	d, err := cl.Service(c.Context, a[0])
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, d)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "service      %s (%s)\n", d.ServiceID, d.Kind)
	fmt.Fprintf(w, "owner        %s, incarnation %d\n", orDash(d.NodeID), d.Incarnation)
	if len(d.Replicas) > 0 {
		in := 0
		for _, r := range d.Replicas {
			if r.InSync {
				in++
			}
		}
		fmt.Fprintf(w, "replicas     %d of %d, %d in sync (%d needed to acknowledge a publish)\n", len(d.Replicas), d.ReplicationFactor, in, d.MinInSync)
		var rows [][]string
		for _, r := range d.Replicas {
			state := "out of sync"
			if r.InSync {
				state = "in sync"
			}
			role, up := "replica", "up"
			if r.Owner {
				role = "owner"
			}
			if !r.Up {
				up = "down"
			}
			rows = append(rows, []string{"  " + r.NodeID, role, state, up})
		}
		printTable(w, "  NODE\tROLE\tSTATE\tNODE STATE", rows)
	} else if len(d.Standbys) > 0 {
		fmt.Fprintf(w, "standbys     %s\n", strings.Join(d.Standbys, ", "))
	}
	if len(d.Tables) > 0 {
		var rows [][]string
		for _, t := range d.Tables {
			rows = append(rows, []string{"  " + t.Table, fmt.Sprint(t.Seqnum), fmt.Sprint(t.Subscribers)})
		}
		printTable(w, "  TABLE\tSEQNUM\tSUBSCRIBERS", rows)
	}
	return nil
}

func servicesDelete(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID")
	if err != nil {
		return err
	}
	if err := cl.DeleteService(c.Context, a[0]); err != nil {
		return err
	}
	return done(c, map[string]string{"deleted": a[0]}, "deleted service %s", a[0])
}

func publishCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "publish",
		Usage:     "set a table's full content from a JSON array of rows (the node computes the delta)",
		ArgsUsage: "SERVICE TABLE",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "snapshot", Usage: "send the whole table to subscribers, not the delta"},
			&ucli.StringFlag{Name: "file", Usage: "read the rows from `PATH` instead of stdin"},
		},
		Action: func(c *ucli.Context) error {
			a, err := args(c, "SERVICE", "TABLE")
			if err != nil {
				return err
			}
			var data []byte
			if path := c.String("file"); path != "" {
				data, err = os.ReadFile(path)
			} else {
				data, err = io.ReadAll(io.LimitReader(os.Stdin, api.DefaultMaxBody+1))
			}
			if err != nil {
				return fmt.Errorf("read rows: %w", err)
			}
			// Checked here too, so a bad file is named before any network.
			if _, err := table.FromJSON(data, table.DefaultLimits); err != nil {
				return fmt.Errorf("rows of %s/%s: %v", a[0], a[1], err)
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			res, err := cl.Publish(c.Context, a[0], a[1], data, c.Bool("snapshot"))
			if err != nil {
				return err
			}
			if res.Changed {
				return done(c, res, "published %s/%s at seqnum %d", a[0], a[1], res.Seqnum)
			}
			return done(c, res, "no change to %s/%s (seqnum %d)", a[0], a[1], res.Seqnum)
		},
	}
}

func getCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "get",
		Usage:     "print a publisher's current table and its seqnum",
		ArgsUsage: "SERVICE TABLE",
		Action: func(c *ucli.Context) error {
			a, cl, err := clientArgs(c, "SERVICE", "TABLE")
			if err != nil {
				return err
			}
			raw, err := cl.Get(c.Context, a[0], a[1])
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printRaw(c, raw)
			}
			var tc struct {
				Seqnum uint64            `json:"seqnum"`
				Rows   []json.RawMessage `json:"rows"`
			}
			if err := json.Unmarshal(raw, &tc); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s/%s at seqnum %d, %d rows\n", a[0], a[1], tc.Seqnum, len(tc.Rows))
			for _, r := range tc.Rows {
				fmt.Fprintf(c.App.Writer, "  %s\n", r)
			}
			return nil
		},
	}
}

// printRaw prints a JSON value compactly on one line.
func printRaw(c *ucli.Context, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := c.App.Writer.Write(buf.Bytes())
	return err
}

func watchCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "watch",
		Usage:     "subscribe through the addressed node and print the table, then each change, one JSON object per line",
		ArgsUsage: "SERVICE TABLE",
		Flags: []ucli.Flag{
			&ucli.IntFlag{Name: "count", Usage: "exit 0 after N lines (0: run until interrupted)"},
			&ucli.DurationFlag{Name: "timeout", Usage: "exit 1 if this passes first (0: none)"},
		},
		Action: func(c *ucli.Context) error {
			a, err := args(c, "SERVICE", "TABLE")
			if err != nil {
				return err
			}
			count, timeout := c.Int("count"), c.Duration("timeout")
			if count < 0 || timeout < 0 {
				return usagef("--count and --timeout must not be negative")
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			// The stream outlives the per-request timeout.
			cl = api.NewClient(api.ClientConfig{Addr: cl.Addr(), Token: cl.Token(), TLS: cl.TLS()})
			ctx := c.Context
			var cancel context.CancelFunc
			if timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			errDone := errors.New("done")
			lines := 0
			err = cl.Watch(ctx, a[0], a[1], func(line []byte) error {
				if err := printRaw(c, line); err != nil {
					return err
				}
				lines++
				if count > 0 && lines >= count {
					return errDone
				}
				return nil
			})
			switch {
			case errors.Is(err, errDone):
				return nil
			case errors.Is(err, context.DeadlineExceeded) && timeout > 0 && count == 0:
				return fmt.Errorf("watch %s/%s: timed out after %s (%d lines)", a[0], a[1], timeout, lines)
			case errors.Is(err, context.DeadlineExceeded) && timeout > 0:
				return fmt.Errorf("watch %s/%s: timed out after %s with %d of %d lines", a[0], a[1], timeout, lines, count)
			case errors.Is(err, context.Canceled) && c.Context.Err() != nil:
				return nil // interrupted
			}
			return err
		},
	}
}

func rpcCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "rpc",
		Usage:     "call a service's RPC action and print the result as JSON",
		ArgsUsage: "SERVICE ACTION",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "args", Usage: "arguments as a JSON object", Value: "{}"},
			&ucli.DurationFlag{Name: "timeout", Usage: "bound on each attempt (default 10s)"},
			&ucli.IntFlag{Name: "retry", Usage: "attempts after one that could not reach the service (or, with --idempotent, timed out)"},
			&ucli.BoolFlag{Name: "local", Usage: "only call an instance on the addressed node"},
			&ucli.BoolFlag{Name: "idempotent", Usage: "the action may run more than once: an attempt that timed out or lost its connection is retried on the next instance"},
		},
		Action: func(c *ucli.Context) error {
			a, err := args(c, "SERVICE", "ACTION")
			if err != nil {
				return err
			}
			dec := json.NewDecoder(strings.NewReader(c.String("args")))
			dec.UseNumber()
			var argv map[string]any
			if err := dec.Decode(&argv); err != nil || argv == nil || dec.More() {
				return usagef("--args must be one JSON object, got %q", c.String("args"))
			}
			if c.Int("retry") < 0 || c.Duration("timeout") < 0 {
				return usagef("--retry and --timeout must not be negative")
			}
			req := api.RPCRequest{Args: argv, Retry: c.Int("retry"), Local: c.Bool("local"), Idempotent: c.Bool("idempotent")}
			if d := c.Duration("timeout"); d > 0 {
				req.Timeout = d.String()
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			if d := c.Duration("timeout"); d > 0 && !flagSet(c, "request-timeout") {
				// The request lasts as long as its attempts may (an explicit
				// --request-timeout still bounds it).
				// Each attempt up to d, up to a second's pause between
				// attempts, and some slack.
				total := time.Duration(math.MaxInt64)
				if d < total/time.Duration(req.Retry+2)-time.Second {
					total = (d+time.Second)*time.Duration(req.Retry+1) + 5*time.Second
				}
				cl = api.NewClient(api.ClientConfig{Addr: cl.Addr(), Token: cl.Token(), TLS: cl.TLS(), Timeout: total})
			}
			raw, err := cl.RPC(c.Context, a[0], a[1], req)
			if err != nil {
				return err
			}
			return printRaw(c, raw)
		},
	}
}
