package mwi_test

import (
	"fmt"

	"github.com/jsonrtc/jsonrtc/notification/mwi"
)

func ExampleParse() {
	s, err := mwi.Parse([]byte("Messages-Waiting: yes\r\nMessage-Account: sip:bob@example.com\r\nVoice-Message: 2/8\r\n"))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(s.Payload()))
	// Output: {"messages_waiting":"yes","message_account":"sip:bob@example.com","voice-message":"2/8 (0/0)"}
}
