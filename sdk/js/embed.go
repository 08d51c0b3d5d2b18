// Package sdkjs embeds the JavaScript SDK's ES modules (src/) so that the
// gateway can serve them to browsers (see package web) straight from the
// sources: there is no copy to keep in step.
package sdkjs

import (
	"embed"
	"io/fs"
)

//go:embed src/*.js src/*.d.ts
var src embed.FS

// Files returns the SDK's modules and type declarations, at the root.
func Files() fs.FS {
	sub, err := fs.Sub(src, "src")
	if err != nil {
		// The embed pattern guarantees the directory exists.
		panic("sdkjs: " + err.Error())
	}
	return sub
}
