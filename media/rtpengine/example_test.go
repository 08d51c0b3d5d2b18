package rtpengine_test

import (
	"context"
	"log"

	"github.com/jsonrtc/jsonrtc/media/rtpengine"
)

// A browser calls a SIP phone: its offer goes to the phone through
// rtpengine, and the phone's answer comes back for the browser.
func Example() {
	ctx := context.Background()
	c, err := rtpengine.Dial(ctx, "127.0.0.1:2223", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	a, err := rtpengine.NewAdapter(c, rtpengine.PolicyAuto)
	if err != nil {
		log.Fatal(err)
	}
	webOffer := "v=0\r\n..." // from the browser's invite
	keys := rtpengine.Keys{CallID: "a84b4c76e66710", FromTag: "1928301774", ViaBranch: "z9hG4bK776asdhds"}
	s, sipOffer, err := a.Offer(ctx, rtpengine.WebToSIP, keys, webOffer)
	if err != nil {
		log.Fatal(err) // answer the browser with an error; send no INVITE
	}
	_ = sipOffer                // the INVITE's body
	phoneAnswer := "v=0\r\n..." // the 200 OK's body
	webAnswer, err := s.Answer(ctx, "a6c85cf", phoneAnswer)
	if err != nil {
		log.Fatal(err)
	}
	_ = webAnswer       // the browser's answer frame
	defer s.Delete(ctx) // at BYE, CANCEL or failure
}
