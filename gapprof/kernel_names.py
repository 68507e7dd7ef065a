"""Kernel names: demangling, and the bare function name that nsys calls shortName.

Shared by the CUPTI writer (which must produce nsys-like short names) and by analyses that match kernel names
from different tools (nsys short names, ncu's demangled names such as `at::<unnamed>::CatArrayBatchedCopy<...>`).
"""

import ctypes
import ctypes.util
import re


def _cxa_demangle():
    """The C++ runtime's own demangler (the one c++filt wraps), or None where libstdc++ is absent."""
    name = ctypes.util.find_library("stdc++") or "libstdc++.so.6"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    func = lib.__cxa_demangle
    func.restype = ctypes.c_void_p
    func.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    return func


_DEMANGLE = _cxa_demangle()
_LIBC_FREE = ctypes.CDLL(None).free
_LIBC_FREE.argtypes = [ctypes.c_void_p]


def demangle(name: str) -> str:
    """Demangled C++ name; a name that is not mangled (C kernels, cuBLAS/CUTLASS symbols) is returned as is."""
    if _DEMANGLE is None or not name.startswith("_Z"):
        return name
    status = ctypes.c_int()
    pointer = _DEMANGLE(name.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not pointer:
        return name
    try:
        return ctypes.string_at(pointer).decode()
    finally:
        _LIBC_FREE(pointer)


def short_name(demangled: str) -> str:
    """The bare function name, as nsys's shortName: no return type, namespace, template or parameters."""
    # The C++ runtime's demangler writes an anonymous namespace as "(anonymous namespace)" where nsys and ncu
    # write "<unnamed>"; its parenthesis would otherwise read as the start of the parameter list.
    demangled = demangled.replace("(anonymous namespace)", "<unnamed>")
    depth, cut = 0, len(demangled)
    for i, char in enumerate(demangled):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == "(" and depth == 0 and i > 0:
            cut = i
            break
    head = demangled[:cut]
    while True:  # drop template arguments, innermost first
        stripped = re.sub(r"<[^<>]*>", "", head)
        if stripped == head:
            break
        head = stripped
    return head.split()[-1].split("::")[-1] if head.split() else demangled
