package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"dse.dev/dse/dse"
	"dse.dev/dse/dse/api"
)

// maxServeOutput bounds what a served command may print (the API's
// request body limit: its reply carries it).
const maxServeOutput = api.DefaultMaxBody - 1<<10

func serveCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "serve RPC actions of an external service by running a command per call",
		Description: "Attaches to SERVICE (created with `dse services create`) through the addressed node and\n" +
			"serves each ACTION until SIGINT/SIGTERM: every call runs COMMAND with the call's args, a JSON\n" +
			"object, on stdin, and DSE_SERVICE, DSE_ACTION and DSE_CALL in its environment. Its stdout, one\n" +
			"JSON value (nothing: null), is the result; a non-zero exit is a remote error carrying the last\n" +
			"line of its stderr. A command still running when its caller's timeout passes is killed.\n" +
			"When the stream to the node drops, serve reconnects (to the next of several --addr, comma-separated).",
		ArgsUsage: "SERVICE ACTION [ACTION...] -- COMMAND [ARGS...]",
		Flags: []ucli.Flag{
			&ucli.IntFlag{Name: "concurrency", Usage: "commands run at once", Value: 1},
			&ucli.DurationFlag{Name: "heartbeat", Usage: "how often the node proves it is alive (a dead one is noticed after three)", Value: api.DefaultHeartbeat},
		},
		Action: serveAction,
	}
}

// serveSpec is what one `dse serve` runs.
type serveSpec struct {
	service string
	actions []string
	command []string
}

func serveArgs(c *ucli.Context) (serveSpec, error) {
	all := c.Args().Slice()
	i := -1
	for k, a := range all {
		if a == "--" {
			i = k
			break
		}
	}
	if i < 0 {
		return serveSpec{}, usagef("serve needs SERVICE ACTION [ACTION...] -- COMMAND [ARGS...]: no -- before the command")
	}
	names, cmd := all[:i], all[i+1:]
	if len(names) < 2 {
		return serveSpec{}, usagef("serve needs SERVICE and at least one ACTION before --, got %q", names)
	}
	if len(cmd) == 0 || cmd[0] == "" {
		return serveSpec{}, usagef("serve needs a COMMAND after --")
	}
	for _, n := range names {
		if n == "" {
			return serveSpec{}, usagef("serve: SERVICE and ACTIONs must not be empty")
		}
	}
	return serveSpec{service: names[0], actions: names[1:], command: cmd}, nil
}

func serveAction(c *ucli.Context) error {
	spec, err := serveArgs(c)
	if err != nil {
		return err
	}
	conc, hb := c.Int("concurrency"), c.Duration("heartbeat")
	if conc < 1 || conc > dse.MaxAttachConcurrency {
		return usagef("--concurrency %d: want 1 to %d", conc, dse.MaxAttachConcurrency)
	}
	if hb < 100*time.Millisecond || hb > time.Minute {
		return usagef("--heartbeat %s: want 100ms to 1m", hb)
	}
	if _, err := exec.LookPath(spec.command[0]); err != nil {
		return fmt.Errorf("serve: cannot run %q: %v", spec.command[0], err)
	}
	cl, err := client(c)
	if err != nil {
		return err
	}
	var addrs []string
	for _, a := range strings.Split(cl.Addr(), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return usagef("--addr is empty")
	}
	timeout := flagValue(c, "request-timeout", (*ucli.Context).Duration)
	sv := &server{c: c, spec: spec, conc: conc, req: api.AttachRequest{Actions: spec.actions, Concurrency: conc, HeartbeatMS: hb.Milliseconds()}}
	for _, a := range addrs {
		sv.nodes = append(sv.nodes, serveNode{
			addr:   a,
			stream: api.NewClient(api.ClientConfig{Addr: a, Token: cl.Token(), TLS: cl.TLS()}),
			reply:  api.NewClient(api.ClientConfig{Addr: a, Token: cl.Token(), TLS: cl.TLS(), Timeout: timeout}),
		})
	}
	return sv.run(c.Context)
}

type serveNode struct {
	addr          string
	stream, reply *api.Client
}

type server struct {
	c     *ucli.Context
	spec  serveSpec
	conc  int
	req   api.AttachRequest
	nodes []serveNode
}

// run attaches and serves until ctx ends (exit 0), reconnecting when the
// stream drops; it fails when the first attach does, or the cluster refuses
// the session for good (service deleted, token revoked).
func (sv *server) run(ctx context.Context) error {
	stderr := sv.c.App.ErrWriter
	k := 0
	backoff := 100 * time.Millisecond
	attached := false
	for {
		node := sv.nodes[k%len(sv.nodes)]
		st, err := node.stream.Attach(ctx, sv.spec.service, sv.req)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !attached || permanent(err) {
				return fmt.Errorf("serve %s via %s: %w", sv.spec.service, node.addr, err)
			}
			k++
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		attached, backoff = true, 100*time.Millisecond
		if err := sv.announce(st, node.addr); err != nil {
			st.Close()
			return err
		}
		err = sv.session(ctx, st, node)
		if ctx.Err() != nil {
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("serve %s: the node ended the session: %w", sv.spec.service, err)
		}
		k++
		fmt.Fprintf(stderr, "dse serve: lost the stream to %s (%v); reconnecting to %s\n", node.addr, err, sv.nodes[k%len(sv.nodes)].addr)
	}
}

// permanent reports whether a failure to attach or a session's end will
// not change by trying again.
func permanent(err error) bool {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case "invalid", "not_found", "service_not_found", "unauthorized", "forbidden", "no_such_method":
		return true
	}
	return false
}

func (sv *server) announce(st *api.ServeStream, addr string) error {
	h := st.Hello
	if jsonOut(sv.c) {
		return printJSON(sv.c, map[string]any{"service": sv.spec.service, "actions": h.Actions, "session": h.Session, "node": h.Node, "address": addr, "concurrency": h.Concurrency})
	}
	_, err := fmt.Fprintf(sv.c.App.Writer, "serving %s: %s (session %s on node %s at %s, concurrency %d)\n", sv.spec.service, strings.Join(h.Actions, ", "), h.Session, h.Node, addr, h.Concurrency)
	return err
}

// session runs the calls of one stream until it ends, or ctx does; then
// the commands still running are killed (their replies would find no
// session) before it returns.
func (sv *server) session(ctx context.Context, st *api.ServeStream, node serveNode) error {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { st.Close() })
	var wg sync.WaitGroup
	defer func() {
		stop()
		st.Close()
		cancel()
		wg.Wait()
	}()
	slots := make(chan struct{}, sv.conc)
	for {
		call, err := st.Next()
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-sctx.Done():
			return sctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			result, failure := sv.runCommand(sctx, call)
			rctx, rcancel := context.WithTimeout(sctx, 30*time.Second)
			defer rcancel()
			// A refused reply (the caller gave up) or a lost node has
			// nobody to tell.
			node.reply.Reply(rctx, sv.spec.service, st.Hello.Session, call.ID, result, failure)
		}()
	}
}

// runCommand runs the command for one call: the result, or the failure
// message.
func (sv *server) runCommand(ctx context.Context, call api.ServeCall) (json.RawMessage, *string) {
	fail := func(format string, a ...any) (json.RawMessage, *string) {
		msg := fmt.Sprintf(format, a...)
		return nil, &msg
	}
	timeout := time.Duration(max(call.TimeoutMS, 1)) * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := sv.spec.command[0]
	cmd := exec.CommandContext(ctx, name, sv.spec.command[1:]...)
	cmd.Env = append(os.Environ(), "DSE_SERVICE="+sv.spec.service, "DSE_ACTION="+call.Action, "DSE_CALL="+call.ID)
	args := call.Args
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	cmd.Stdin = bytes.NewReader(append(args, '\n'))
	var stdout limitedBuffer
	var stderr tailBuffer
	stdout.limit, stderr.keep = maxServeOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second // a grandchild holding the pipes open
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return fail("%s %s: killed when its caller's timeout (%s) passed", name, call.Action, timeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if line := lastLine(stderr.b); line != "" {
				return fail("%s", line)
			}
			return fail("%s %s: %v (no message on stderr)", name, call.Action, ee)
		}
		return fail("%s %s: %v", name, call.Action, err)
	case stdout.over:
		return fail("%s %s: printed more than %d bytes", name, call.Action, stdout.limit)
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if len(out) == 0 {
		return json.RawMessage("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil || dec.More() {
		shown := out
		if len(shown) > 200 {
			shown = append(shown[:200:200], "..."...)
		}
		return fail("%s %s printed %q: not one JSON value", name, call.Action, shown)
	}
	return v, nil
}

// lastLine returns the last non-blank line of b, trimmed.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// limitedBuffer keeps the first limit bytes written and notes the rest.
type limitedBuffer struct {
	bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// tailBuffer keeps the last keep bytes written (at most twice that).
type tailBuffer struct {
	b    []byte
	keep int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.keep {
		t.b = append(t.b[:0], t.b[len(t.b)-t.keep:]...)
	}
	return len(p), nil
}

var (
	_ io.Writer = (*limitedBuffer)(nil)
	_ io.Writer = (*tailBuffer)(nil)
)
