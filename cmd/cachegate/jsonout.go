package main

import (
	"encoding/json"
	"os"
)

// printJSON writes v to stdout as indented JSON, the stable form for scripts.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
