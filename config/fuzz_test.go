package config

import (
	"os"
	"testing"
)

func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../config.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("graph:\n  channels: [stable-4.16]\n  chanels: [x]\n"))
	f.Add([]byte("registry: {timeout: 10 parsecs}\n"))
	f.Add([]byte("target:\n  release_tags: ['{{.Nope}}']\n"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		_ = cfg.Validate() // must not panic, whatever the values
		_ = cfg.StatePath()
	})
}
