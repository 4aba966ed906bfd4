package ring_test

import (
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

func Example() {
	r := ring.New(ring.DefaultVNodes)
	for id := base.GroupID(1); id <= 3; id++ {
		r, _ = r.AddGroup(id, 1)
	}
	g, _ := r.Lookup([]byte("hello"))
	again, _ := r.Lookup([]byte("hello"))
	fmt.Println(g == again, r.Epoch(), len(r.Groups()))
	// Output: true 3 3
}
