package main

import (
	"context"
	"fmt"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

func main() {
	ref, err := docker.ParseReference("//localhost:5000/x:y")
	fmt.Println(ref, err)
	src, err := ref.NewImageSource(context.Background(), &types.SystemContext{})
	fmt.Println(src, err)
	_ = manifest.DockerV2Schema2MediaType
}
