package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse/api"
)

// Exit codes, fixed by CLI.md.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	defaultAddr = "127.0.0.1:7401"
)

// usageError is bad usage: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// Run runs the dse command line with args (args[0] is the program name) and
// returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	msg = strings.TrimPrefix(msg, "dse: ") // the dse package's own prefix
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "dse: %s (see 'dse --help')\n", msg)
		return exitUsage
	}
	var ec ucli.ExitCoder
	if errors.As(err, &ec) {
		if msg != "" {
			fmt.Fprintf(stderr, "dse: %s\n", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "dse: %s\n", msg)
	return exitFailed
}

// clientFlags are accepted both before the command and after it. Only the
// global ones (before the command) read the environment: a command's copy
// that did (and so counted as set) would win over a flag given before the
// command, where an environment variable is only a fallback.
func clientFlags(global bool) []ucli.Flag {
	env := func(name string) []string {
		if !global {
			return nil
		}
		return []string{name}
	}
	return []ucli.Flag{
		&ucli.StringFlag{Name: "addr", Usage: "HTTP address of the node to talk to", EnvVars: env("DSE_ADDR"), Value: defaultAddr},
		jsonFlag(),
		&ucli.StringFlag{Name: "token", Usage: "API token", EnvVars: env("DSE_TOKEN")},
		&ucli.StringFlag{Name: "ca", Usage: "CA certificate to verify an HTTPS node (enables HTTPS)", EnvVars: env("DSE_CA")},
		&ucli.DurationFlag{Name: "request-timeout", Usage: "bound on one request (0: none)", Value: 30 * time.Second},
	}
}

func jsonFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: "json", Usage: "print JSON (one value; one object per line for streams)"}
}

func newApp(stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:                 "dse",
		Usage:                "distributed services engine: sequenced tables and RPC over a Raft cluster",
		Writer:               stdout,
		ErrWriter:            stderr,
		Flags:                clientFlags(true),
		EnableBashCompletion: true,
		HideVersion:          true,
		ExitErrHandler:       func(*ucli.Context, error) {},
		Action: func(c *ucli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("unknown command %q", c.Args().First())
			}
			ucli.ShowAppHelp(c)
			return usagef("a command is required")
		},
		OnUsageError: onUsageError,
		Commands: []*ucli.Command{
			agentCommand(),
			devCommand(),
			membersCommand(),
			leaderCommand(),
			statusCommand(),
			servicesCommand(),
			publishCommand(),
			getCommand(),
			watchCommand(),
			rpcCommand(),
			serveCommand(), // serve.go
			driversCommand(),
			datasourcesCommand(),
			benchCommand(),
			tlsCommand(),
			tokensCommand(),
		},
	}
	prepare(app.Commands)
	return app
}

// prepare gives every command the usage-error handler, every leaf the client
// flags, and every parent an action that refuses unknown subcommands.
func prepare(cmds []*ucli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 {
			prepare(c.Subcommands)
			if c.Action == nil {
				c.Action = func(ctx *ucli.Context) error {
					if ctx.Args().Len() > 0 {
						return usagef("unknown command %q for %q", ctx.Args().First(), ctx.Command.FullName())
					}
					ucli.ShowSubcommandHelp(ctx)
					return usagef("%q needs a subcommand", ctx.Command.FullName())
				}
			}
			continue
		}
		if c.Category != "server" {
			c.Flags = append(c.Flags, clientFlags(false)...)
		}
	}
}

func onUsageError(_ *ucli.Context, err error, _ bool) error {
	return usagef("%v", err)
}

// flag returns the value of a flag given either before or after the command
// (the innermost one that was set wins), else its default.
func flagValue[T any](c *ucli.Context, name string, get func(*ucli.Context, string) T) T {
	for _, x := range c.Lineage() {
		if x.Command == nil && x.App == nil {
			continue
		}
		if x.IsSet(name) {
			return get(x, name)
		}
	}
	return get(c, name)
}

// flagSet reports whether a flag was given, before or after the command.
func flagSet(c *ucli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if (x.Command != nil || x.App != nil) && x.IsSet(name) {
			return true
		}
	}
	return false
}

func jsonOut(c *ucli.Context) bool {
	return flagValue(c, "json", (*ucli.Context).Bool)
}

// client builds the API client from the client flags.
func client(c *ucli.Context) (*api.Client, error) {
	cfg := api.ClientConfig{
		Addr:    flagValue(c, "addr", (*ucli.Context).String),
		Token:   flagValue(c, "token", (*ucli.Context).String),
		Timeout: flagValue(c, "request-timeout", (*ucli.Context).Duration),
	}
	if cfg.Timeout < 0 {
		return nil, usagef("--request-timeout %s: want a positive duration, or 0 for none", cfg.Timeout)
	}
	if ca := flagValue(c, "ca", (*ucli.Context).String); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("read --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate", ca)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return api.NewClient(cfg), nil
}

// clientArgs checks the positional arguments and builds the API client.
func clientArgs(c *ucli.Context, names ...string) ([]string, *api.Client, error) {
	a, err := args(c, names...)
	if err != nil {
		return nil, nil, err
	}
	cl, err := client(c)
	return a, cl, err
}

// args checks the number of positional arguments and returns them.
func args(c *ucli.Context, names ...string) ([]string, error) {
	got := c.Args().Slice()
	if len(got) != len(names) {
		if len(names) == 0 {
			return nil, usagef("%s takes no arguments, got %q", c.Command.FullName(), got)
		}
		return nil, usagef("%s needs %s, got %d argument(s)", c.Command.FullName(), strings.Join(names, " "), len(got))
	}
	for i, a := range got {
		if a == "" {
			return nil, usagef("%s: %s must not be empty", c.Command.FullName(), names[i])
		}
	}
	return got, nil
}

// printJSON writes v as one line of JSON.
func printJSON(c *ucli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table prints rows under a header, aligned, for people.
func printTable(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// interspersed moves the flags that follow a leaf command's positional
// arguments in front of them (`dse watch S T --count 3`), since urfave/cli v2
// stops parsing flags at the first positional argument. "--" ends flags.
func interspersed(app *ucli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	flags, cmds := app.Flags, app.Commands
	i := 1
	for i < len(args) {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
			i++
			if takesValue(flags, a) && i < len(args) {
				out = append(out, args[i])
				i++
			}
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil {
			break
		}
		out = append(out, a)
		i++
		flags, cmds = cmd.Flags, cmd.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var fl, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			fl = append(fl, a)
			if takesValue(flags, a) && i+1 < len(args) {
				i++
				fl = append(fl, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	out = append(out, fl...)
	return append(out, pos...)
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the flag token a needs the next argument.
func takesValue(flags []ucli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	if name == "h" || name == "help" {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*ucli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
