// Command dse runs and manages a dse cluster; see cli and README.md.
package main

import (
	"os"

	"dse.dev/dse/cli"
)

func main() {
	os.Exit(cli.Run(os.Args, os.Stdout, os.Stderr))
}
