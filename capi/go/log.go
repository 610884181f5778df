package lowbit

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// lowbitGoLog receives lowbit's log lines for contexts made WithLogger.
// user_data points to C memory holding the logger's cgo.Handle.
//
//export lowbitGoLog
func lowbitGoLog(userData unsafe.Pointer, level C.int32_t, message *C.char) {
	if userData == nil || message == nil {
		return
	}
	l, ok := cgo.Handle(*(*C.uintptr_t)(userData)).Value().(*logger)
	if !ok || l.f == nil {
		return
	}
	defer func() { _ = recover() }() // a panicking logger must not unwind into C
	l.f(LogLevel(level), C.GoString(message))
}
