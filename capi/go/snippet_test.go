package lowbit_test

// The Go snippet of README.md, run by `go test`.

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"lowbit"
)

func TestReadmeSnippet(t *testing.T) {
	cacheDir, err := os.MkdirTemp(os.Getenv("LOWBIT_CACHE_DIR"), "lowbit-go-snippet-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(cacheDir)
	if err := snippet(cacheDir); err != nil {
		t.Fatal(err)
	}
}

func snippet(cacheDir string) error {
	// --- snippet begin ---
	// An offline context compiles kernels for sm_90a without a GPU.
	ctx, err := lowbit.NewOfflineContext("sm_90a", lowbit.WithCacheDir(cacheDir))
	if err != nil {
		return err
	}
	defer ctx.Close()

	desc := lowbit.NewQuantizeDesc(64, 4096) // per tensor, quantize
	desc.XDType, desc.QDType = lowbit.BF16, lowbit.S8
	plan, err := ctx.NewQuantizePlan(desc) // compiled with NVRTC, stored in the cache
	if err != nil {
		return err
	}
	defer plan.Close()
	js, _ := plan.Describe()
	fmt.Println("lowbit", lowbit.VersionString(), js)

	// Errors wrap the status and lowbit's message.
	_, err = ctx.NewQuantizePlan(lowbit.NewQuantizeDesc()) // no dims: rank 0
	var lerr *lowbit.Error
	if !errors.Is(err, lowbit.InvalidProblem) || !errors.As(err, &lerr) {
		return fmt.Errorf("expected InvalidProblem, got %v", err)
	}
	fmt.Println("rejected:", lerr.Message)

	// On a GPU: lowbit.NewDeviceContext(0) and, with device pointers as uint64
	// and a CUstream as uintptr (0: default stream):
	//   plan.Run([]lowbit.Arg{{Role: lowbit.ArgX, Ptr: x}, {Role: lowbit.ArgQ, Ptr: q},
	//       {Role: lowbit.ArgScale, Ptr: scale}}, stream)
	// --- snippet end ---
	return nil
}
