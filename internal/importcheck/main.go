// Command importcheck fails when an import points the wrong way in the
// module's layers (DESIGN.md's picture):
//
//	main → cli → dse (api, dsetest above the root; engine packages below) → fsm, transport
//	            └→ bench → dse
//
// fsm and transport never import dse nor each other; dse never imports cli
// or bench; nothing but main imports cli; the packages below the root dse
// package never import it; internal packages import nothing of the module
// but other internal packages. Test files count too. `make lint` runs it.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

const module = "dse.dev/dse"

func main() {
	graph, err := loadGraph()
	if err != nil {
		fmt.Fprintln(os.Stderr, "importcheck:", err)
		os.Exit(2)
	}
	bad := check(graph)
	for _, b := range bad {
		fmt.Println(b)
	}
	if len(bad) > 0 {
		fmt.Printf("importcheck: %d imports point the wrong way\n", len(bad))
		os.Exit(1)
	}
}

// loadGraph lists each package of the module with what it and its tests
// import.
func loadGraph() (map[string][]string, error) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`, "./...")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	graph := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph, sc.Err()
}

// layer names a package's place, for the rules.
func layer(pkg string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	switch {
	case pkg == module:
		return "main"
	case rel == "dse":
		return "dse"
	case rel == "dse/api", rel == "dse/dsetest":
		return "above-dse" // packages on top of the root dse package
	case strings.HasPrefix(rel, "dse/"):
		return "below-dse" // the engine's own packages, under the root
	case strings.HasPrefix(rel, "internal/"):
		return "internal"
	}
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return rel
}

// check returns every import of graph that breaks a rule, sorted.
func check(graph map[string][]string) []string {
	var bad []string
	for pkg, imports := range graph {
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		from := layer(strings.TrimSuffix(pkg, "_test"))
		for _, imp := range imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if imp == strings.TrimSuffix(pkg, "_test") {
				continue // a package's external tests import it
			}
			if why := forbidden(from, layer(imp)); why != "" {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s", pkg, imp, why))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// forbidden says why a package of layer from may not import one of layer
// to ("" if it may).
func forbidden(from, to string) string {
	switch {
	case to == "cli" && from != "main":
		return "only main imports cli"
	case to == "main":
		return "nothing imports main"
	case (from == "fsm" || from == "transport") && (to == "dse" || to == "below-dse" || to == "above-dse"):
		return from + " never imports dse"
	case from == "fsm" && to == "transport", from == "transport" && to == "fsm":
		return "fsm and transport never import each other"
	case (from == "dse" || from == "below-dse" || from == "above-dse") && (to == "bench" || to == "cli"):
		return "dse never imports " + to
	case from == "below-dse" && (to == "dse" || to == "above-dse"):
		return "the packages below the root dse package never import it, nor what sits on it"
	case from == "internal" && to != "internal":
		return "internal packages import nothing of the module but each other"
	case from == "bench" && to == "cli":
		return "bench never imports cli"
	}
	return ""
}
