package pidf_test

import (
	"fmt"

	"github.com/jsonrtc/jsonrtc/presence/pidf"
	"github.com/jsonrtc/jsonrtc/protocol"
)

func ExampleMarshal() {
	b, err := pidf.Marshal(protocol.PresencePayload{Presentity: "alice@example.com", Status: "open", Note: "at lunch"})
	if err != nil {
		panic(err)
	}
	p, err := pidf.Parse(b)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n%+v\n", b, p)
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?>
	// <presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com"><tuple id="t1"><status><basic>open</basic></status></tuple><note>at lunch</note></presence>
	// {Presentity:alice@example.com Status:open Activity: Note:at lunch}
}
