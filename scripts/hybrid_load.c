// Load a GGUF on the CPU with libllama (the library llama-server links) and create a context with
// llama-server's defaults for what matters to memory (separate per-slot KV streams, no full-size SWA
// cache, ubatch 512, no CPU repack like --no-repack); llama.cpp logs every buffer to stderr.
// usage: hybrid_load MODEL N_CTX_TOTAL N_SEQ FA(0/1) KVTYPE(f16|q8_0)      (used by measure_hybrid.py)
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char ** argv) {
    if (argc < 6) return 2;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.use_extra_bufts = false;  // no CPU repack, like --no-repack
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 3;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) atoi(argv[2]);
    cp.n_seq_max = (uint32_t) atoi(argv[3]);
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.flash_attn_type = atoi(argv[4]) ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    enum ggml_type t = strcmp(argv[5], "q8_0") == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    cp.type_k = t;
    cp.type_v = t;
    cp.kv_unified = false;
    cp.swa_full = false;  // llama-server (common_params) default
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) return 4;
    fprintf(stderr, "LOADED-OK\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
