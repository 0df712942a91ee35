/* LD_PRELOAD shim for ggml-rpc-server: the device it serves reports FAKE_DEVICE_MIB MiB, all of it free.
 *
 *   cc -shared -fPIC -O2 -o fake_device_memory.so scripts/fake_device_memory.c -ldl
 *   FAKE_DEVICE_MIB=6144 LD_PRELOAD=$PWD/fake_device_memory.so ggml-rpc-server -H 127.0.0.1 -p 50052
 *
 * The RPC server answers RPC_CMD_GET_DEVICE_MEMORY (and prints its device list) through libggml-base's
 * exported ggml_backend_dev_memory(), so interposing that one symbol gives llama.cpp's --fit a "GPU" of any
 * size. Without FAKE_DEVICE_MIB the call goes through to the real function (dlsym RTLD_NEXT).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

typedef void (*dev_memory_fn)(void *dev, size_t *free, size_t *total);

void ggml_backend_dev_memory(void *dev, size_t *free, size_t *total) {
    const char *mib = getenv("FAKE_DEVICE_MIB");
    if (mib != NULL && *mib != '\0') {
        size_t bytes = (size_t) strtoull(mib, NULL, 10) * 1024 * 1024;
        *free = bytes;
        *total = bytes;
        return;
    }
    static dev_memory_fn real = NULL;
    if (real == NULL) {
        real = (dev_memory_fn) dlsym(RTLD_NEXT, "ggml_backend_dev_memory");
    }
    if (real != NULL) {
        real(dev, free, total);
    } else {
        *free = 0;
        *total = 0;
    }
}
