"""Compile a graph's kernels with TVM for one target: the interface the bundle writer uses.

    lib = build_kernels(graph, make_target("arm64"), workdir)   # -> KernelLibrary

`lib.calls` has ONE entry per op of `graph.ops`, in graph order (the host code walks it):

    KernelCall(index, op_name, op_kind, kind, func, symbol, args)
      kind    "kernel": call `symbol` with `args`;
              "view":   no code; the single output aliases the single input's bytes
                        (Reshape/Flatten/Squeeze/Unsqueeze/Identity/Dropout). func/symbol None.
      func    the TVM function name (k0, k1, ...); identical kernels (same op kind, attributes,
              Fused body and argument types) share one function.
      symbol  the C symbol in the object: "__tvm_ffi_<func>".
      args    tuple[KernelArg(name, dtype, shape, role)]: the op's present operands in operand
              order (role "input", or "param" when the value is a weight living in the weights
              blob), then its results (role "output"). `name` is the IR value name.

`lib.objects` are the object files to link (ELF for the target; today one `lib0.o`), and
`lib.archive` the `.tar` TVM exported them in. `lib.target` is the edgecc target name
("x86_64"/"arm64"), `lib.triple` the LLVM triple.

Calling convention (TVM-FFI packed, see tvm/ffi/c_api.h):
    int32_t __tvm_ffi_<func>(void *self, const TVMFFIAny *args, int32_t num_args,
                             TVMFFIAny *result);
  self = NULL, result may point to a dummy TVMFFIAny; each args[i] has
  type_index = kTVMFFIDLTensorPtr (7) and v_ptr = a DLTensor* with: data = the tensor's
  bytes (64-byte aligned: TVM assumes buffer alignment when vectorizing), device = {kDLCPU, 0},
  ndim/shape = KernelArg.shape (ndim 0 allowed), dtype = KernelArg.dtype (bool = {kDLBool 6, 8, 1}),
  strides = NULL (compact row-major), byte_offset = 0. Returns 0 on success, non-zero after
  calling TVMFFIErrorSetRaisedFromCStrParts (the bundle provides it).
  Symbols the object needs from the bundle: TVMFFIErrorSetRaisedFromCStrParts and the function
  pointers __TVMBackendAllocWorkspace, __TVMBackendFreeWorkspace, __TVMBackendParallelLaunch
  (+ __TVMBackendParallelBarrier if present; check `nm -u`).

Builds are deterministic: the same graph and target give byte-identical objects.
`run_kernels_in_tvm(graph, feeds, target="x86_64")` runs the compiled kernels in graph order with
TVM's own runtime (host only) - for testing the lowering without the bundle.
"""
