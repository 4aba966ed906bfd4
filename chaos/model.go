package chaos

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Operation kinds.
const (
	OpGet    = "get"
	OpPut    = "put"
	OpCAS    = "cas"
	OpDelete = "delete"
)

// Input is what a client asked.
type Input struct {
	Op    string
	Key   string
	Value string // put, cas
	CAS   uint64 // cas: expected modify index, 0 = absent
}

// Output is what the client learnt.
type Output struct {
	// Unknown: the outcome is not known (timeout, connection cut, 504).
	Unknown bool
	// OK: a write took effect; a get found the key.
	OK bool
	// Value and Index: a get's value and modify index; a write's new
	// modify index.
	Value string
	Index uint64
	// Current: a failed CAS's reported current index (0: absent).
	Current uint64
}

// state is one key's register. Index 0 with Exists means the value was
// written by an operation whose outcome, and so index, is unknown.
type state struct {
	Exists bool
	Value  string
	Index  uint64
}

func (s state) casMatches(expect uint64) (match, unsure bool) {
	switch {
	case expect == 0:
		return !s.Exists, false
	case !s.Exists:
		return false, false
	case s.Index == 0:
		return true, true
	}
	return s.Index == expect, false
}

func step(st interface{}, in interface{}, out interface{}) (bool, interface{}) {
	s := st.(state)
	i := in.(Input)
	o := out.(Output)
	switch i.Op {
	case OpGet:
		if o.Unknown {
			return true, s
		}
		if !o.OK {
			return !s.Exists, s
		}
		if !s.Exists || s.Value != o.Value || (s.Index != 0 && s.Index != o.Index) {
			return false, s
		}
		s.Index = o.Index
		return true, s
	case OpPut:
		if o.Unknown {
			return true, state{Exists: true, Value: i.Value}
		}
		return o.OK, state{Exists: true, Value: i.Value, Index: o.Index}
	case OpCAS:
		match, unsure := s.casMatches(i.CAS)
		switch {
		case o.Unknown:
			if match {
				return true, state{Exists: true, Value: i.Value}
			}
			return true, s
		case o.OK:
			return match, state{Exists: true, Value: i.Value, Index: o.Index}
		default: // refused: the current index must be what was reported
			if match && !unsure {
				return false, s
			}
			if !s.Exists {
				return o.Current == 0, s
			}
			if s.Index == 0 {
				if o.Current == 0 || o.Current == i.CAS {
					return false, s
				}
				s.Index = o.Current
				return true, s
			}
			return o.Current == s.Index, s
		}
	case OpDelete:
		switch {
		case o.Unknown:
			return true, state{}
		case o.OK:
			return s.Exists, state{}
		default: // not found
			return !s.Exists, s
		}
	}
	return false, s
}

// Model is the porcupine model of one ringkv key. Histories are
// partitioned by key.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return state{} },
	Step: step,
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(Input), out.(Output)
		res := "?"
		switch {
		case o.Unknown:
			res = "unknown"
		case i.Op == OpGet && o.OK:
			res = fmt.Sprintf("%q@%d", o.Value, o.Index)
		case i.Op == OpGet:
			res = "not found"
		case o.OK:
			res = fmt.Sprintf("ok@%d", o.Index)
		case i.Op == OpCAS:
			res = fmt.Sprintf("failed, current %d", o.Current)
		default:
			res = "not found"
		}
		switch i.Op {
		case OpPut:
			return fmt.Sprintf("put(%s, %q) -> %s", i.Key, i.Value, res)
		case OpCAS:
			return fmt.Sprintf("cas(%s, %d, %q) -> %s", i.Key, i.CAS, i.Value, res)
		}
		return fmt.Sprintf("%s(%s) -> %s", i.Op, i.Key, res)
	},
	DescribeState: func(st interface{}) string {
		s := st.(state)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%q@%d", s.Value, s.Index)
	},
}
