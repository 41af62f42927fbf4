"""The text of a bundle: model.h, model.c, example.c, the weights assembly, the build snippets.

Every function here is a pure rendering of a `Program` (bundle_layout.py): same layout, same
bytes. `<id>` is the bundle name (a C identifier); `<ID>` its upper case.
"""
from __future__ import annotations

import json

from edgecc.version import __version__
from edgecc.dtypes import DTYPE

from edgecc.backends.bundle.program import IOSpec, Program

RUNTIME_SOURCES = ("rt_error.c", "rt_workspace.c", "rt_threads.c")
RUNTIME_HEADER = "edgecc_runtime.h"



def c_string(text: str) -> str:
    """A C string literal for any text (non-ASCII as octal escapes of its UTF-8 bytes)."""
    out = []
    for b in text.encode():
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127 and c != "?":          # '?' could start a trigraph
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_comment(text: str) -> str:
    """Text safe inside /* */ on one line."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text).replace("*/", "* /")


PROFILE_FUNCS = ["profile_steps", "profile_step", "profile_reset"]


def api_symbols(name: str, profile: bool = False) -> list[str]:
    """The global symbols of lib<id>.a / lib<id>.so (everything else is local); `profile`:
    those of lib<id>_profile.so (`make profile`)."""
    funcs = ["run", "set_num_threads", "get_num_threads", "last_error"]
    funcs += PROFILE_FUNCS if profile else []
    arrays = [f"{io}_{what}" for io in ("input", "output")
              for what in ("names", "dtypes", "ndims", "shapes", "bytes")]
    return [f"{name}_{s}" for s in funcs + arrays]


def _shape(shape) -> str:
    return "{" + ", ".join(str(d) for d in shape) + "}" if shape else "{0}"


def _io_macros(ID: str, kind: str, i: int, spec: IOSpec) -> list[str]:
    p = f"{ID}_{kind.upper()}_{i}"
    elems = 1
    for d in spec.shape:
        elems *= d
    return [
        f"/* {kind} {i} {c_comment(spec.name)}: {spec.dtype}[{','.join(map(str, spec.shape))}] */",
        f"#define {p}_NAME  {c_string(spec.name)}",
        f"#define {p}_DTYPE {c_string(spec.dtype)}",
        f"#define {p}_NDIM  {len(spec.shape)}",
        f"#define {p}_SHAPE {_shape(spec.shape)}",
        f"#define {p}_ELEMS {elems}",
        f"#define {p}_BYTES {spec.nbytes}",
        f"typedef {DTYPE[spec.dtype].c} {ID.lower()}_{kind}_{i}_t;",
        "",
    ]


def render_header(lay: Program) -> str:
    n, ID = lay.name, lay.name.upper()
    lines = [
        f"/* {n}: edgecc {__version__} bundle for {lay.target} ({lay.triple}).",
        " * Generated: do not edit.",
        " *",
        " *   static unsigned char arena[" + ID + "_ARENA_BYTES] __attribute__((aligned(64)));",
        f" *   const void *inputs[{ID}_NUM_INPUTS] = {{...}};    each 64-byte aligned, C order",
        f" *   void *outputs[{ID}_NUM_OUTPUTS] = {{...}};         each 64-byte aligned, C order",
        f" *   if ({n}_run(inputs, outputs, arena) != 0) puts({n}_last_error());",
        " *",
        f" * The weights ({ID}_WEIGHTS_BYTES bytes, read-only) are linked into lib{n}.a /",
        f" * lib{n}.so: there is no weights file to ship or load at run time.",
        f" * {n}_run allocates nothing; runs of one model are serialized.",
        f" * Threads: {n}_set_num_threads(n), else EDGECC_NUM_THREADS (read at the first run),",
        " * else " +
        (f"{lay.default_threads} (--threads)" if lay.default_threads else "the online CPUs") + ".",
        " */",
        f"#ifndef {ID}_H_",
        f"#define {ID}_H_",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {ID}_ARENA_BYTES  {lay.arena_bytes}",
        f"#define {ID}_NUM_INPUTS   {len(lay.inputs)}",
        f"#define {ID}_NUM_OUTPUTS  {len(lay.outputs)}",
        f"#define {ID}_ALIGN        64    /* arena, inputs and outputs: byte alignment */",
        f"#define {ID}_WEIGHTS_BYTES {lay.weights_bytes}",
        "",
    ]
    for i, s in enumerate(lay.inputs):
        lines += _io_macros(ID, "input", i, s)
    for i, s in enumerate(lay.outputs):
        lines += _io_macros(ID, "output", i, s)
    lines += [
        "/* 0 = ok; -1 a kernel failed, -2 a bad argument (NULL or misaligned pointer):",
        f" * {n}_last_error() says which. */",
        f"int {n}_run(const void *const *inputs, void *const *outputs, void *arena);",
        f"void {n}_set_num_threads(int n);   /* n <= 0: back to the default */",
        f"int {n}_get_num_threads(void);",
        f"const char *{n}_last_error(void);",
        "",
        "/* per input / output, by position */",
    ]
    for io in ("input", "output"):
        lines += [
            f"extern const char *const {n}_{io}_names[];",
            f"extern const char *const {n}_{io}_dtypes[];",
            f"extern const int {n}_{io}_ndims[];",
            f"extern const int64_t *const {n}_{io}_shapes[];",
            f"extern const size_t {n}_{io}_bytes[];",
        ]
    lines += [
        "",
        "#ifdef EDGECC_PROFILE",
        "/* `make profile` (lib<id>_profile.so, built with -DEDGECC_PROFILE): seconds spent in",
        " * each step (kernel launch or copy) summed over the runs since the last reset. */",
        f"int {n}_profile_steps(void);",
        f"double {n}_profile_step(int i, const char **what);",
        f"void {n}_profile_reset(void);",
        "#endif",
    ]
    lines += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {ID}_H_ */", ""]
    return "\n".join(lines)


def _io_tables(n: str, io: str, specs: list[IOSpec]) -> list[str]:
    if not specs:      # C has no empty arrays: one unused entry
        return [f"const char *const {n}_{io}_names[] = {{NULL}};",
                f"const char *const {n}_{io}_dtypes[] = {{NULL}};",
                f"const int {n}_{io}_ndims[] = {{0}};",
                f"const int64_t *const {n}_{io}_shapes[] = {{NULL}};",
                f"const size_t {n}_{io}_bytes[] = {{0}};", ""]
    lines = [f"static const int64_t {io}_shape_{i}[] = {_shape(s.shape)};"
             for i, s in enumerate(specs)]
    join = lambda items: ", ".join(items)  # noqa: E731
    lines += [
        f"const char *const {n}_{io}_names[] = {{{join(c_string(s.name) for s in specs)}}};",
        f"const char *const {n}_{io}_dtypes[] = {{{join(c_string(s.dtype) for s in specs)}}};",
        f"const int {n}_{io}_ndims[] = {{{join(str(len(s.shape)) for s in specs)}}};",
        f"const int64_t *const {n}_{io}_shapes[] = "
        f"{{{join(f'{io}_shape_{i}' for i in range(len(specs)))}}};",
        f"const size_t {n}_{io}_bytes[] = {{{join(str(s.nbytes) for s in specs)}}};",
        "",
    ]
    return lines


_WHERE = {"arena": "AT_ARENA", "input": "AT_INPUT", "output": "AT_OUTPUT", "weights": "AT_WEIGHTS"}


def render_model_c(lay: Program) -> str:
    n, ID = lay.name, lay.name.upper()
    L = [
        f"/* {n}: host code of the edgecc bundle ({lay.target}). Generated: do not edit.",
        " * Binds static DLTensors to the arena / inputs / outputs / weights and calls the kernels",
        " * in the memory plan's order. */",
        "#ifdef EDGECC_PROFILE",
        "#define _POSIX_C_SOURCE 199309L   /* clock_gettime */",
        "#include <time.h>",
        "#endif",
        "#include <string.h>",
        "",
        f'#include "{RUNTIME_HEADER}"',
        '#include "model.h"',
        "",
        f"#define DEFAULT_THREADS {lay.default_threads}",
        "",
        f"extern const unsigned char {n}_weights[];   /* {n}_weights.S */",
    ]
    L += [f"int32_t {s}(void *, const TVMFFIAny *, int32_t, TVMFFIAny *);" for s in lay.symbols]
    L += [""]
    L += _io_tables(n, "input", lay.inputs) + _io_tables(n, "output", lay.outputs)

    # tensors
    L += ["/* ---- tensors: one per IR value ---- */"]
    for t, s in enumerate(lay.tensors):
        L.append(f"static int64_t shape_{t}[] = {_shape(s.shape)};")
    L += ["", "enum { AT_ARENA, AT_INPUT, AT_OUTPUT, AT_WEIGHTS };",
          "typedef struct { unsigned char where; unsigned short index; size_t offset; } place_t;",
          "", "static DLTensor T[] = {"]
    for t, s in enumerate(lay.tensors):
        code, bits = DTYPE[s.dtype].dlpack
        L.append(f"  /* {t} {c_comment(s.value)} */ {{NULL, {{EDGECC_DL_CPU, 0}}, {len(s.shape)}, "
                 f"{{{code}, {bits}, 1}}, shape_{t}, NULL, 0}},")
    L += ["};", "", "static const place_t P[] = {"]
    for t, s in enumerate(lay.tensors):
        L.append(f"  {{{_WHERE[s.where]}, {s.index}, {s.offset}}},   /* {t} */")
    L += ["};", f"#define NUM_TENSORS {len(lay.tensors)}", ""]

    # kernel arguments
    args = [a for s in lay.steps if s.symbol for a in s.args]
    L += ["/* ---- kernel arguments (TVM-FFI packed: DLTensor pointers) ---- */",
          "static const TVMFFIAny A[] = {"]
    L += [f"  {{EDGECC_FFI_DLTENSOR_PTR, 0, {{.v_ptr = &T[{a}]}}}}," for a in args] \
        or ["  {0, 0, {0}},"]
    L += ["};", ""]

    # steps
    L += ["/* ---- steps: kernels (fn != NULL) and copies (src -> dst) ---- */",
          "typedef struct {",
          "  edgecc_kernel_fn fn;",
          "  int first_arg, num_args, src, dst;",
          "  size_t nbytes, ws_offset, ws_bytes, ws_task;",
          "  const char *what;",
          "} step_t;", "", "static const step_t S[] = {"]
    first = 0
    for s in lay.steps:
        if s.symbol:
            L.append(f"  {{{s.symbol}, {first}, {len(s.args)}, -1, -1, 0, {s.ws_offset}, "
                     f"{s.ws_bytes}, {s.ws_task}, {c_string(s.what)}}},")
            first += len(s.args)
        else:
            L.append(f"  {{NULL, 0, 0, {s.src}, {s.dst}, {s.nbytes}, 0, 0, 0, "
                     f"{c_string(s.what)}}},")
    if not lay.steps:
        L.append("  {NULL, 0, 0, -1, -1, 0, 0, 0, 0, \"nothing\"},")
    L += ["};", f"#define NUM_STEPS {len(lay.steps)}", ""]

    L += [_RUN_TEMPLATE.replace("<id>", n).replace("<ID>", ID)]
    return "\n".join(L)


_RUN_TEMPLATE = r"""static int misaligned(const void *p) {
  return ((uintptr_t)p & (uintptr_t)(<ID>_ALIGN - 1)) != 0;
}

static int check_args(const void *const *inputs, void *const *outputs, void *arena) {
  int i;
  for (i = 0; i < <ID>_NUM_INPUTS; ++i)
    if (inputs == NULL || inputs[i] == NULL || misaligned(inputs[i])) {
      edgecc_rt_set_error("<id>_run: input %d '%s' is %s", i, <id>_input_names[i],
                          inputs == NULL || inputs[i] == NULL ? "NULL" : "not 64-byte aligned");
      return -2;
    }
  for (i = 0; i < <ID>_NUM_OUTPUTS; ++i)
    if (outputs == NULL || outputs[i] == NULL || misaligned(outputs[i])) {
      edgecc_rt_set_error("<id>_run: output %d '%s' is %s", i, <id>_output_names[i],
                          outputs == NULL || outputs[i] == NULL ? "NULL" : "not 64-byte aligned");
      return -2;
    }
  if (<ID>_ARENA_BYTES > 0 && (arena == NULL || misaligned(arena))) {
    edgecc_rt_set_error("<id>_run: arena is %s (needs <ID>_ARENA_BYTES bytes)",
                        arena == NULL ? "NULL" : "not 64-byte aligned");
    return -2;
  }
  return 0;
}

static void bind(const void *const *inputs, void *const *outputs, char *arena) {
  int t;
  for (t = 0; t < NUM_TENSORS; ++t) {
    const place_t *p = &P[t];
    switch (p->where) {
      case AT_ARENA: T[t].data = arena + p->offset; break;
      case AT_INPUT: T[t].data = (void *)inputs[p->index]; break;   /* kernels only read it */
      case AT_OUTPUT: T[t].data = outputs[p->index]; break;
      default: T[t].data = (void *)(<id>_weights + p->offset); break;
    }
  }
}

#ifdef EDGECC_PROFILE
static double step_seconds[NUM_STEPS];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int <id>_profile_steps(void) { return NUM_STEPS; }

double <id>_profile_step(int i, const char **what) {
  if (i < 0 || i >= NUM_STEPS) return -1.0;
  if (what != NULL) *what = S[i].what;
  return step_seconds[i];
}

void <id>_profile_reset(void) { memset(step_seconds, 0, sizeof step_seconds); }
#define STEP_START() double t0_ = now()
#define STEP_END(i) (step_seconds[i] += now() - t0_)
#else
#define STEP_START() ((void)0)
#define STEP_END(i) ((void)0)
#endif

static int run_steps(char *arena) {
  int i;
  for (i = 0; i < NUM_STEPS; ++i) {
    const step_t *s = &S[i];
    STEP_START();
    if (s->fn != NULL) {
      TVMFFIAny result;
      result.type_index = EDGECC_FFI_NONE;
      result.zero_padding = 0;
      result.v.v_int64 = 0;
      edgecc_rt_workspace_set(s->ws_bytes ? arena + s->ws_offset : NULL, s->ws_bytes, s->ws_task);
      if (s->fn(NULL, A + s->first_arg, s->num_args, &result) != 0) {
        edgecc_rt_error_context(s->what);
        return -1;
      }
    } else if (T[s->dst].data != T[s->src].data) {
      memcpy(T[s->dst].data, T[s->src].data, s->nbytes);
    }
    STEP_END(i);
  }
  return 0;
}

int <id>_run(const void *const *inputs, void *const *outputs, void *arena) {
  int rc;
  edgecc_rt_set_default_threads(DEFAULT_THREADS);
  edgecc_rt_run_begin();
  rc = check_args(inputs, outputs, arena);
  if (rc == 0) {
    bind(inputs, outputs, (char *)arena);
    rc = run_steps((char *)arena);
  }
  edgecc_rt_run_end();
  return rc;
}

void <id>_set_num_threads(int n) {
  edgecc_rt_set_default_threads(DEFAULT_THREADS);
  edgecc_rt_set_num_threads(n);
}

int <id>_get_num_threads(void) {
  edgecc_rt_set_default_threads(DEFAULT_THREADS);
  return edgecc_rt_num_threads();
}

const char *<id>_last_error(void) { return edgecc_rt_last_error(); }
"""


def render_weights_asm(lay: Program) -> str:
    n = lay.name
    return "\n".join([
        f"/* {n}: the weights ({lay.weights_bytes} bytes, 64-byte aligned params) linked in. */",
        f'\t.section .rodata.{n}_weights,"a"',
        "\t.balign 64",
        f"\t.globl {n}_weights",
        f"\t.type {n}_weights, %object",
        f"{n}_weights:",
        f'\t.incbin "{n}_weights.bin"',
        "\t.balign 64",
        f"\t.size {n}_weights, . - {n}_weights",
        '\t.section .note.GNU-stack,"",%progbits',
        ""])


_EXAMPLE_TEMPLATE = r"""/* example.c: runs the edgecc model '<id>': raw input files -> raw outputs.
 *
 *   ./example [-t threads] [-r repeats] [-p 1] <input files...> <output files...>
 *
 * -p 1 fills the arena with 0xFF bytes (NaN as floats) before every run (a test aid).
 * Each file holds one tensor's bytes in C order; shapes and dtypes are in model.h. Build with
 * only a C compiler:   cc -std=c99 -O2 -I. example.c lib<id>.a -lpthread -lm -o example
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static void *alloc_aligned(size_t n) {
  void *p = NULL;
  return posix_memalign(&p, <ID>_ALIGN, n ? n : <ID>_ALIGN) == 0 ? p : NULL;
}

static int read_exact(const char *path, void *buf, size_t n) {
  FILE *f = fopen(path, "rb");
  int ok;
  if (f == NULL) { perror(path); return 0; }
  ok = fread(buf, 1, n, f) == n && fgetc(f) == EOF;
  fclose(f);
  if (!ok) fprintf(stderr, "%s: expected exactly %lu bytes\n", path, (unsigned long)n);
  return ok;
}

static int write_all(const char *path, const void *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (f == NULL) { perror(path); return 0; }
  ok = fwrite(buf, 1, n, f) == n;
  ok = (fclose(f) == 0) && ok;
  if (!ok) fprintf(stderr, "%s: write failed\n", path);
  return ok;
}

static void usage(void) {
  int i;
  fprintf(stderr, "usage: example [-t threads] [-r repeats] [-p 1] <inputs...> <outputs...>\n");
  for (i = 0; i < <ID>_NUM_INPUTS; ++i)
    fprintf(stderr, "  input  %d '%s': %s, %lu bytes\n", i, <id>_input_names[i],
            <id>_input_dtypes[i], (unsigned long)<id>_input_bytes[i]);
  for (i = 0; i < <ID>_NUM_OUTPUTS; ++i)
    fprintf(stderr, "  output %d '%s': %s, %lu bytes\n", i, <id>_output_names[i],
            <id>_output_dtypes[i], (unsigned long)<id>_output_bytes[i]);
}

int main(int argc, char **argv) {
  const void *inputs[<ID>_NUM_INPUTS + 1];
  void *outputs[<ID>_NUM_OUTPUTS + 1];
  void *arena;
  int argi = 1, threads = 0, repeats = 1, poison = 0, i, r, status = 0;
  struct timespec t0, t1;
  double ms;

  while (argi + 1 < argc && argv[argi][0] == '-') {
    if (strcmp(argv[argi], "-t") == 0) threads = atoi(argv[argi + 1]);
    else if (strcmp(argv[argi], "-r") == 0) repeats = atoi(argv[argi + 1]);
    else if (strcmp(argv[argi], "-p") == 0) poison = atoi(argv[argi + 1]);
    else break;
    argi += 2;
  }
  if (argc - argi != <ID>_NUM_INPUTS + <ID>_NUM_OUTPUTS || repeats < 1) { usage(); return 2; }
  if (threads > 0) <id>_set_num_threads(threads);

  arena = alloc_aligned(<ID>_ARENA_BYTES);
  if (arena == NULL) { fprintf(stderr, "out of memory\n"); return 1; }
  for (i = 0; i < <ID>_NUM_INPUTS; ++i) {
    void *buf = alloc_aligned(<id>_input_bytes[i]);
    if (buf == NULL || !read_exact(argv[argi + i], buf, <id>_input_bytes[i])) return 1;
    inputs[i] = buf;
  }
  for (i = 0; i < <ID>_NUM_OUTPUTS; ++i)
    if ((outputs[i] = alloc_aligned(<id>_output_bytes[i])) == NULL) return 1;

  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (r = 0; r < repeats; ++r) {
    if (poison) memset(arena, 0xFF, <ID>_ARENA_BYTES);
    if (<id>_run(inputs, outputs, arena) != 0) {
      fprintf(stderr, "<id>_run failed: %s\n", <id>_last_error());
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  fprintf(stderr, "<id>: %d run(s), %.3f ms per run, %d thread(s)\n", repeats, ms / repeats,
          <id>_get_num_threads());

  for (i = 0; i < <ID>_NUM_OUTPUTS; ++i)
    if (!write_all(argv[argi + <ID>_NUM_INPUTS + i], outputs[i], <id>_output_bytes[i]))
      status = 1;
  for (i = 0; i < <ID>_NUM_INPUTS; ++i) free((void *)inputs[i]);
  for (i = 0; i < <ID>_NUM_OUTPUTS; ++i) free(outputs[i]);
  free(arena);
  return status;
}
"""


def render_example(lay: Program) -> str:
    return _EXAMPLE_TEMPLATE.replace("<id>", lay.name).replace("<ID>", lay.name.upper())


def render_makefile(lay: Program, cross: str, kernels: list[str]) -> str:
    n = lay.name
    objs = " ".join(s[:-2] + ".o" for s in ("model.c",) + RUNTIME_SOURCES)
    return f"""\
# {n}: edgecc bundle for {lay.target} ({lay.triple}). Generated by edgecc {__version__}.
#
#   make            lib{n}.a and lib{n}.so from the sources here ({' '.join(kernels)} holds
#                   the TVM-compiled kernels, prebuilt for {lay.triple})
#   make example    example runner: raw input files -> raw output files (see example.c)
#   make profile    lib{n}_profile.so: also times every step ({n}_profile_* in model.h)
#
# Link your program with only a C compiler (no TVM, no Python):
#   $(CC) -I<bundle dir> app.c <bundle dir>/lib{n}.a -lpthread -lm
# lib{n}.a / lib{n}.so define only the {n}_* symbols of model.h (and {n}_weights in the .a),
# so several bundles can be linked into one program.

CROSS   ?= {cross}
CC      := $(CROSS)gcc
LD      := $(CROSS)ld
OBJCOPY := $(CROSS)objcopy
AR      := $(CROSS)ar
CFLAGS  ?= -O2
WERROR  ?=
BUNDLE_CFLAGS = -std=c99 -fPIC -Wall -Wextra $(WERROR) -ffile-prefix-map=$(CURDIR)=.

KERNELS = {' '.join(kernels)}
CODE    = {objs} $(KERNELS)
API     = {' '.join(api_symbols(n))}

all: lib{n}.a lib{n}.so

%.o: %.c {RUNTIME_HEADER} model.h
\t$(CC) $(CFLAGS) $(BUNDLE_CFLAGS) -c $< -o $@

{n}_weights.o: {n}_weights.S {n}_weights.bin
\t$(CC) -c {n}_weights.S -o $@

# the code as one relocatable object whose only global symbols are the API (the weights
# stay a separate member: {n}_weights is their only symbol)
{n}_bundle.o: $(CODE)
\t$(LD) -r -o $@ $(CODE)
\t$(OBJCOPY) $(addprefix --keep-global-symbol=,$(API)) $@

lib{n}.a: {n}_bundle.o {n}_weights.o
\trm -f $@
\t$(AR) rcsD $@ {n}_bundle.o {n}_weights.o

lib{n}.so: $(CODE) {n}_weights.o {n}.map
\t$(CC) -shared -o $@ $(CODE) {n}_weights.o -Wl,--version-script={n}.map -Wl,-z,noexecstack \\
\t\t-lpthread -lm

profile: lib{n}_profile.so

lib{n}_profile.so: model.c {' '.join(RUNTIME_SOURCES)} {RUNTIME_HEADER} model.h {n}_weights.S \\
\t\t{n}_weights.bin $(KERNELS) {n}_profile.map
\t$(CC) $(CFLAGS) $(BUNDLE_CFLAGS) -DEDGECC_PROFILE -shared -o $@ model.c \\
\t\t{' '.join(RUNTIME_SOURCES)} {n}_weights.S $(KERNELS) \\
\t\t-Wl,--version-script={n}_profile.map -Wl,-z,noexecstack -lpthread -lm

example: example.c model.h lib{n}.a
\t$(CC) $(CFLAGS) -std=c99 -Wall -Wextra $(WERROR) -I. -o $@ example.c lib{n}.a \\
\t\t-lpthread -lm $(LDFLAGS)

clean:
\trm -f {objs} {n}_weights.o {n}_bundle.o

.PHONY: all clean profile
"""


def render_version_script(lay: Program, profile: bool = False) -> str:
    syms = "".join(f" {s};" for s in api_symbols(lay.name, profile))
    return f"{{\n  global:{syms}\n  local: *;\n}};\n"


def render_cmake(lay: Program, kernels: list[str]) -> str:
    n = lay.name
    d = "${CMAKE_CURRENT_SOURCE_DIR}"
    code = " ".join(("model.c",) + RUNTIME_SOURCES)
    objs = " ".join(f'"{d}/{k}"' for k in kernels)
    keep = " ".join(f"--keep-global-symbol={s}" for s in api_symbols(n))
    return f"""\
# {n}: edgecc bundle for {lay.target} ({lay.triple}). Generated by edgecc {__version__}.
#
#   standalone:        cmake -S <bundle dir> -B build && cmake --build build
#                      (lib{n}.a and the example runner of example.c)
#   in your project:   add_subdirectory(<bundle dir> edgecc_{n})
#                      target_link_libraries(app PRIVATE edgecc::{n})
#
# lib{n}.a is built from the sources here with the project's C compiler; {' '.join(kernels)}
# holds the TVM-compiled kernels, prebuilt for {lay.triple}: configure with a toolchain for
# it. Like the Makefile's, the library defines only the {n}_* symbols of model.h (and
# {n}_weights), so several bundles can be linked into one program.
cmake_minimum_required(VERSION 3.13)
project(edgecc_{n} LANGUAGES C ASM)
find_package(Threads REQUIRED)

add_library(edgecc_{n}_code OBJECT {code})
set_target_properties(edgecc_{n}_code PROPERTIES C_STANDARD 99 POSITION_INDEPENDENT_CODE ON)

# the code as one relocatable object whose only global symbols are the API
set(EDGECC_{n.upper()}_BUNDLE_O "${{CMAKE_CURRENT_BINARY_DIR}}/{n}_bundle.o")
add_custom_command(OUTPUT "${{EDGECC_{n.upper()}_BUNDLE_O}}"
  COMMAND "${{CMAKE_LINKER}}" -r -o "${{EDGECC_{n.upper()}_BUNDLE_O}}"
          "$<TARGET_OBJECTS:edgecc_{n}_code>" {objs}
  COMMAND "${{CMAKE_OBJCOPY}}" {keep}
          "${{EDGECC_{n.upper()}_BUNDLE_O}}"
  DEPENDS edgecc_{n}_code {objs}
  COMMAND_EXPAND_LISTS VERBATIM)

# the weights: .incbin finds {n}_weights.bin beside the .S
set_source_files_properties({n}_weights.S PROPERTIES COMPILE_OPTIONS "-Wa,-I{d}")
add_library(edgecc_{n} STATIC "${{EDGECC_{n.upper()}_BUNDLE_O}}" {n}_weights.S)
target_include_directories(edgecc_{n} INTERFACE "{d}")
target_link_libraries(edgecc_{n} INTERFACE Threads::Threads m)
set_target_properties(edgecc_{n} PROPERTIES OUTPUT_NAME {n})
add_library(edgecc::{n} ALIAS edgecc_{n})

if(CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)   # built on its own: the example too
  add_executable(edgecc_{n}_example example.c)
  set_target_properties(edgecc_{n}_example PROPERTIES C_STANDARD 99 OUTPUT_NAME example)
  target_link_libraries(edgecc_{n}_example PRIVATE edgecc::{n})
endif()
"""


def render_bundle_json(lay: Program) -> str:
    io = lambda specs: [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape),  # noqa: E731
                         "bytes": s.nbytes} for s in specs]
    meta = {
        "format": 1,
        "edgecc_version": __version__,
        "name": lay.name,
        "target": lay.target,
        "triple": lay.triple,
        "inputs": io(lay.inputs),
        "outputs": io(lay.outputs),
        "arena_bytes": lay.arena_bytes,
        "weights_bytes": lay.weights_bytes,
        "kernels": lay.num_kernels,
        "default_threads": lay.default_threads,
        "workspace_threads": lay.workspace_threads,
        "header": "model.h",
        "static_library": f"lib{lay.name}.a",
        "shared_library": f"lib{lay.name}.so",
        "example": "example.c",
    }
    return json.dumps(meta, indent=2) + "\n"
