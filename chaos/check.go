package chaos

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the checker's answer.
type Verdict struct {
	Operations int
	// Linearizable is false when some key's history has no linearization.
	Linearizable bool
	// Unknown means the checker ran out of time before deciding.
	Unknown bool
	// Visualization is the file porcupine's visualization was written to
	// when the history was not linearizable.
	Visualization string
}

// Check checks ops against Model within timeout. When the history is not
// linearizable and vizPath is set, porcupine's visualization is written
// there.
func Check(ops []porcupine.Operation, timeout time.Duration, vizPath string) (Verdict, error) {
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	v := Verdict{Operations: len(ops), Linearizable: res == porcupine.Ok, Unknown: res == porcupine.Unknown}
	if res == porcupine.Illegal && vizPath != "" {
		if err := porcupine.VisualizePath(Model, info, vizPath); err != nil {
			return v, fmt.Errorf("writing visualization: %w", err)
		}
		v.Visualization = vizPath
	}
	return v, nil
}
