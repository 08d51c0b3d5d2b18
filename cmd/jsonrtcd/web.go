package main

import (
	"net/http"

	"github.com/jsonrtc/jsonrtc/web"
)

// webHandler serves the demo softphone and the SDK's browser build.
func webHandler() http.Handler { return web.Handler() }
