package cli

import (
	"fmt"
	"strconv"

	ucli "github.com/urfave/cli/v2"
)

func membersCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "members",
		Usage: "list and manage cluster members",
		Subcommands: []*ucli.Command{
			{
				Name:   "list",
				Usage:  "list members with their state and reachability",
				Action: membersList,
			},
			{
				Name:      "remove",
				Usage:     "remove a member (refused if it would lose quorum, unless --force)",
				ArgsUsage: "ID",
				Flags:     []ucli.Flag{&ucli.BoolFlag{Name: "force", Usage: "remove even if quorum would be lost"}},
				Action:    membersRemove,
			},
			{
				Name:   "leave",
				Usage:  "make the addressed node leave the cluster gracefully",
				Action: membersLeave,
			},
			{
				Name:      "promote",
				Usage:     "turn a non-voter into a voter",
				ArgsUsage: "ID",
				Action:    membersPromote,
			},
		},
	}
}

func membersList(c *ucli.Context) error {
	_, cl, err := clientArgs(c)
	if err != nil {
		return err
	}
	ms, err := cl.Members(c.Context)
	if err != nil {
		return err
	}
	if jsonOut(c) {
		return printJSON(c, ms)
	}
	var rows [][]string
	for _, m := range ms {
		rows = append(rows, []string{m.ID, m.Address, m.HTTP, strconv.FormatBool(m.Voter), strconv.FormatBool(m.Leader), m.State, strconv.FormatBool(m.Reachable), strconv.FormatUint(m.LastIndex, 10)})
	}
	printTable(c.App.Writer, "ID\tADDRESS\tHTTP\tVOTER\tLEADER\tSTATE\tREACHABLE\tLAST INDEX", rows)
	return nil
}

func membersRemove(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID")
	if err != nil {
		return err
	}
	if err := cl.Remove(c.Context, a[0], c.Bool("force")); err != nil {
		return err
	}
	return done(c, map[string]string{"removed": a[0]}, "removed %s", a[0])
}

func membersLeave(c *ucli.Context) error {
	_, cl, err := clientArgs(c)
	if err != nil {
		return err
	}
	st, err := cl.Status(c.Context)
	if err != nil {
		return err
	}
	if err := cl.Leave(c.Context); err != nil {
		return err
	}
	return done(c, map[string]string{"left": st.ID}, "%s left the cluster", st.ID)
}

func membersPromote(c *ucli.Context) error {
	a, cl, err := clientArgs(c, "ID")
	if err != nil {
		return err
	}
	if err := cl.Promote(c.Context, a[0]); err != nil {
		return err
	}
	return done(c, map[string]string{"promoted": a[0]}, "promoted %s to voter", a[0])
}

func leaderCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "leader",
		Usage: "manage Raft leadership",
		Subcommands: []*ucli.Command{{
			Name:   "transfer",
			Usage:  "move leadership to another voter and wait until done",
			Flags:  []ucli.Flag{&ucli.StringFlag{Name: "to", Usage: "the voter to lead (default: any)"}},
			Action: leaderTransfer,
		}},
	}
}

func leaderTransfer(c *ucli.Context) error {
	_, cl, err := clientArgs(c)
	if err != nil {
		return err
	}
	leader, err := cl.TransferLeadership(c.Context, c.String("to"))
	if err != nil {
		return err
	}
	return done(c, map[string]string{"leader": leader}, "leader is now %s", leader)
}

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show the addressed node's Raft status",
		Action: func(c *ucli.Context) error {
			_, cl, err := clientArgs(c)
			if err != nil {
				return err
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return err
			}
			if jsonOut(c) {
				return printJSON(c, st)
			}
			printTable(c.App.Writer, "ID\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tMEMBERS", [][]string{{
				st.ID, st.State, st.Leader, strconv.FormatUint(st.Term, 10), strconv.FormatUint(st.CommitIndex, 10),
				strconv.FormatUint(st.AppliedIndex, 10), strconv.Itoa(st.Members),
			}})
			return nil
		},
	}
}

// done reports a finished operation: v as JSON, or a sentence for people.
func done(c *ucli.Context, v any, format string, a ...any) error {
	if jsonOut(c) {
		return printJSON(c, v)
	}
	_, err := fmt.Fprintf(c.App.Writer, format+"\n", a...)
	return err
}
