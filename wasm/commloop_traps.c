/*
 * Linked into every pipeline .wasm ahead of the C library (src/pipeline/compile.ts): a
 * kernel's abort() becomes a call of the host's commloop.abort, which fails the stage with
 * "called abort()". Without it emscripten's standalone abort() is proc_exit(1), which the
 * host cannot tell from exit(1).
 */
__attribute__((import_module("commloop"), import_name("abort"))) void commloop_host_abort(void);

_Noreturn void abort(void) {
    commloop_host_abort();
    __builtin_unreachable();
}
