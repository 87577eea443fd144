package transport

import (
	"bytes"
	"context"
	"testing"
)

func BenchmarkFrameWriteRead(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 100)
	var buf bytes.Buffer
	b.SetBytes(int64(len(body) + HeaderSize))
	for b.Loop() {
		buf.Reset()
		WriteFrame(&buf, Frame{Type: 3, Body: body}, 1<<20)
		if _, err := ReadFrame(&buf, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCallLoopback(b *testing.B) {
	srv, _ := New(Config{Bind: "127.0.0.1:0"})
	defer srv.Close()
	srv.SetHandler(newRecorder())
	cli, _ := New(Config{Bind: "127.0.0.1:0"})
	defer cli.Close()
	body := []byte("ping")
	for b.Loop() {
		if _, err := cli.Call(context.Background(), srv.Addr(), 1, body); err != nil {
			b.Fatal(err)
		}
	}
}
