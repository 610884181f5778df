package lowbit_test

// One per-tensor quantize plan end to end on a GPU, compared bit-exactly with
// lowbit's CPU reference. Device memory comes from libcuda through cgo and
// dlopen (internal/cudatest). Skipped, with the reason, without a GPU.

import (
	"errors"
	"math"
	"os"
	"testing"
	"unsafe"

	"lowbit"
	"lowbit/internal/cudatest"
)

func bytesOf[T any](s []T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

func TestGPUQuantizeMatchesReference(t *testing.T) {
	dir, err := os.MkdirTemp(os.Getenv("LOWBIT_CACHE_DIR"), "lowbit-go-gpu-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, err := lowbit.NewDeviceContext(0, lowbit.WithCacheDir(dir))
	if errors.Is(err, lowbit.NoDevice) {
		t.Skipf("SKIPPED: no GPU: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	dev, err := cudatest.Open()
	if err != nil {
		t.Skipf("SKIPPED: %v", err)
	}
	defer dev.Close()

	const n = 1 << 20
	x := make([]float32, n)
	for i := range x {
		x[i] = 4*float32(math.Sin(float64(float32(0.001)*float32(i)))) + 0.37*float32(i%7)
	}
	scale := []float32{0.037}
	zp := []int32{3}
	desc := lowbit.NewQuantizeDesc(n)
	plan, err := ctx.NewQuantizePlan(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()

	ptrs := make([]uint64, 4)
	for i, size := range []int{n * 4, n, 4, 4} {
		if ptrs[i], err = dev.Alloc(size); err != nil {
			t.Fatal(err)
		}
		defer dev.Free(ptrs[i])
	}
	dx, dq, ds, dz := ptrs[0], ptrs[1], ptrs[2], ptrs[3]
	for _, c := range []struct {
		dst uint64
		src []byte
	}{{dx, bytesOf(x)}, {ds, bytesOf(scale)}, {dz, bytesOf(zp)}} {
		if err := dev.CopyIn(c.dst, c.src); err != nil {
			t.Fatal(err)
		}
	}
	args := []lowbit.Arg{{Role: lowbit.ArgX, Ptr: dx}, {Role: lowbit.ArgQ, Ptr: dq},
		{Role: lowbit.ArgScale, Ptr: ds}, {Role: lowbit.ArgZeroPoint, Ptr: dz}}
	if err := plan.Run(args, 0); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]int8, n)
	if err := dev.CopyOut(bytesOf(got), dq); err != nil {
		t.Fatal(err)
	}

	want := make([]int8, n)
	err = lowbit.ReferenceRun(desc, []lowbit.HostArg{
		{Role: lowbit.ArgX, Data: x}, {Role: lowbit.ArgQ, Data: want},
		{Role: lowbit.ArgScale, Data: scale}, {Role: lowbit.ArgZeroPoint, Data: zp},
	})
	if err != nil {
		t.Fatal(err)
	}
	mismatches := 0
	for i := range got {
		if got[i] != want[i] {
			mismatches++
		}
	}
	if mismatches != 0 {
		t.Fatalf("%d of %d elements differ from the reference", mismatches, n)
	}
	t.Logf("gpu quantize of %d elements matches the reference bit-exactly", n)
}
