package cli

import (
	"fmt"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse/pki"
)

func tlsCommand() *ucli.Command {
	return &ucli.Command{
		Name:     "tls",
		Category: "server",
		Usage:    "make a cluster CA and node certificates",
		Subcommands: []*ucli.Command{
			{
				Name:     "init",
				Category: "server",
				Usage:    "write a new cluster CA: DIR/ca.pem and DIR/ca-key.pem",
				Flags:    []ucli.Flag{&ucli.StringFlag{Name: "dir", Usage: "where to write the CA"}, jsonFlag()},
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					if c.String("dir") == "" {
						return usagef("tls init needs --dir")
					}
					if err := pki.Init(c.String("dir")); err != nil {
						return err
					}
					return wrote(c, "ca", filepath.Join(c.String("dir"), "ca.pem"), filepath.Join(c.String("dir"), "ca-key.pem"))
				},
			},
			{
				Name:     "cert",
				Category: "server",
				Usage:    "write DIR/ID.pem and DIR/ID-key.pem, signed by the CA in DIR, for server and client use",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "dir", Usage: "the CA's folder, where the certificate goes too"},
					&ucli.StringFlag{Name: "id", Usage: "the node id (the file names)"},
					&ucli.StringSliceFlag{Name: "host", Usage: "an IP address or DNS name the certificate is valid for (default 127.0.0.1 and localhost)"},
					jsonFlag(),
				},
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					if c.String("dir") == "" || c.String("id") == "" {
						return usagef("tls cert needs --dir and --id")
					}
					if err := pki.Issue(c.String("dir"), c.String("id"), c.StringSlice("host")); err != nil {
						return err
					}
					return wrote(c, "cert", filepath.Join(c.String("dir"), c.String("id")+".pem"), filepath.Join(c.String("dir"), c.String("id")+"-key.pem"))
				},
			},
		},
	}
}

// wrote reports the files tls init or cert wrote: with --json as
// {"ca"|"cert": FILE, "key": FILE}.
func wrote(c *ucli.Context, kind, cert, key string) error {
	if jsonOut(c) {
		return printJSON(c, map[string]string{kind: cert, "key": key})
	}
	_, err := fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", cert, key)
	return err
}

func tokensCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "tokens",
		Usage: "create, list and revoke API tokens",
		Subcommands: []*ucli.Command{
			{
				Name:  "create",
				Usage: "create a token (its secret is shown only now)",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "role", Usage: "read, write or admin"},
					&ucli.StringFlag{Name: "name", Usage: "a name to recognize it by"},
				},
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					switch c.String("role") {
					case "read", "write", "admin":
					default:
						return usagef("--role must be read, write or admin, got %q", c.String("role"))
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					t, err := cl.CreateToken(c.Context, c.String("name"), c.String("role"))
					if err != nil {
						return err
					}
					return done(c, t, "token %s (%s, role %s): %s\n(the secret is not shown again)", t.ID, orDash(t.Name), t.Role, t.Token)
				},
			},
			{
				Name:  "list",
				Usage: "list tokens (no secrets)",
				Action: func(c *ucli.Context) error {
					_, cl, err := clientArgs(c)
					if err != nil {
						return err
					}
					ts, err := cl.Tokens(c.Context)
					if err != nil {
						return err
					}
					if jsonOut(c) {
						return printJSON(c, ts)
					}
					var rows [][]string
					for _, t := range ts {
						rows = append(rows, []string{t.ID, orDash(t.Name), t.Role})
					}
					printTable(c.App.Writer, "ID\tNAME\tROLE", rows)
					return nil
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token",
				ArgsUsage: "ID",
				Action: func(c *ucli.Context) error {
					a, cl, err := clientArgs(c, "ID")
					if err != nil {
						return err
					}
					if err := cl.RevokeToken(c.Context, a[0]); err != nil {
						return err
					}
					return done(c, map[string]string{"revoked": a[0]}, "revoked token %s", a[0])
				},
			},
		},
	}
}
