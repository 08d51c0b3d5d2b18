package main

import "net/http"

// webHandler serves the demo page.
func webHandler() http.Handler { return http.NotFoundHandler() }
