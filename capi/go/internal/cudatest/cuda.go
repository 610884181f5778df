// Package cudatest gives lowbit's Go tests device memory without a CUDA
// toolkit or Go CUDA package: it dlopens libcuda.so.1 and calls the few
// driver functions the end-to-end test needs.
package cudatest

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

typedef int (*fn_init)(unsigned);
typedef int (*fn_device_get)(int*, int);
typedef int (*fn_ctx_retain)(void**, int);
typedef int (*fn_ctx_release)(int);
typedef int (*fn_ctx_set)(void*);
typedef int (*fn_alloc)(uint64_t*, size_t);
typedef int (*fn_free)(uint64_t);
typedef int (*fn_htod)(uint64_t, const void*, size_t);
typedef int (*fn_dtoh)(void*, uint64_t, size_t);
typedef int (*fn_sync)(void);

static struct {
	fn_init init; fn_device_get device_get; fn_ctx_retain retain; fn_ctx_release release; fn_ctx_set set;
	fn_alloc alloc; fn_free free; fn_htod htod; fn_dtoh dtoh; fn_sync sync;
} cu;

// 0 on success, -1 without libcuda, -2 if a symbol is missing.
static int cu_load(void) {
	void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) return -1;
	cu.init = (fn_init)dlsym(lib, "cuInit");
	cu.device_get = (fn_device_get)dlsym(lib, "cuDeviceGet");
	cu.retain = (fn_ctx_retain)dlsym(lib, "cuDevicePrimaryCtxRetain");
	cu.release = (fn_ctx_release)dlsym(lib, "cuDevicePrimaryCtxRelease_v2");
	cu.set = (fn_ctx_set)dlsym(lib, "cuCtxSetCurrent");
	cu.alloc = (fn_alloc)dlsym(lib, "cuMemAlloc_v2");
	cu.free = (fn_free)dlsym(lib, "cuMemFree_v2");
	cu.htod = (fn_htod)dlsym(lib, "cuMemcpyHtoD_v2");
	cu.dtoh = (fn_dtoh)dlsym(lib, "cuMemcpyDtoH_v2");
	cu.sync = (fn_sync)dlsym(lib, "cuCtxSynchronize");
	if (!cu.init || !cu.device_get || !cu.retain || !cu.release || !cu.set || !cu.alloc || !cu.free ||
	    !cu.htod || !cu.dtoh || !cu.sync) return -2;
	return 0;
}
// Initializes the driver and makes device 0's primary context current on this thread.
static int cu_open(int* dev) {
	void* ctx = NULL;
	int rc = cu.init(0);
	if (rc == 0) rc = cu.device_get(dev, 0);
	if (rc == 0) rc = cu.retain(&ctx, *dev);
	if (rc == 0) rc = cu.set(ctx);
	return rc;
}
static int cu_close(int dev) { return cu.release(dev); }
static int cu_alloc(uint64_t* p, size_t n) { return cu.alloc(p, n); }
static int cu_free(uint64_t p) { return cu.free(p); }
static int cu_htod(uint64_t dst, const void* src, size_t n) { return cu.htod(dst, src, n); }
static int cu_dtoh(void* dst, uint64_t src, size_t n) { return cu.dtoh(dst, src, n); }
static int cu_sync(void) { return cu.sync(); }
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Device is device 0's primary context, current on a locked OS thread.
type Device struct{ ordinal C.int }

// Open loads libcuda and makes device 0 current on the calling goroutine's
// thread, which stays locked until Close. It fails without libcuda or a GPU.
func Open() (*Device, error) {
	if rc := C.cu_load(); rc != 0 {
		return nil, fmt.Errorf("libcuda.so.1 cannot be loaded (%d)", int(rc))
	}
	runtime.LockOSThread()
	d := &Device{}
	if rc := C.cu_open(&d.ordinal); rc != 0 {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("CUDA driver init failed: CUresult %d", int(rc))
	}
	return d, nil
}

func check(rc C.int, what string) error {
	if rc != 0 {
		return fmt.Errorf("%s failed: CUresult %d", what, int(rc))
	}
	return nil
}

// Alloc returns n bytes of device memory.
func (d *Device) Alloc(n int) (uint64, error) {
	var p C.uint64_t
	err := check(C.cu_alloc(&p, C.size_t(n)), "cuMemAlloc")
	return uint64(p), err
}

// Free releases device memory.
func (d *Device) Free(p uint64) { C.cu_free(C.uint64_t(p)) }

// CopyIn copies host bytes to the device.
func (d *Device) CopyIn(dst uint64, src []byte) error {
	return check(C.cu_htod(C.uint64_t(dst), unsafe.Pointer(&src[0]), C.size_t(len(src))), "cuMemcpyHtoD")
}

// CopyOut copies device bytes to the host.
func (d *Device) CopyOut(dst []byte, src uint64) error {
	return check(C.cu_dtoh(unsafe.Pointer(&dst[0]), C.uint64_t(src), C.size_t(len(dst))), "cuMemcpyDtoH")
}

// Sync waits for the device.
func (d *Device) Sync() error { return check(C.cu_sync(), "cuCtxSynchronize") }

// Close releases the primary context and unlocks the thread.
func (d *Device) Close() {
	C.cu_close(d.ordinal)
	runtime.UnlockOSThread()
}
