"""Build the compiled core (romancore) with OpenMP when the compiler supports it.

Set ``ROMANCORE_OPENMP=0`` to force a serial build, ``ROMANCORE_OPENMP=force`` to fail
rather than silently build without OpenMP (CI uses ``force``).
"""

import os
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _openmp_flags(compiler) -> list[str] | None:
    """Return the OpenMP compile/link flag that works with ``compiler``, or None."""
    ctype = getattr(compiler, "compiler_type", "")
    candidates = ["/openmp"] if ctype == "msvc" else ["-fopenmp", "-qopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(OPENMP_PROBE)
        for flag in candidates:
            try:
                objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=[flag])
                compiler.link_executable(
                    objs, "probe", output_dir=tmp, extra_postargs=[flag]
                )
            except Exception:  # noqa: BLE001 - any failure means "not supported"
                continue
            return [flag]
    return None


class OpenMPBuildExt(build_ext):
    """build_ext that adds OpenMP flags to every extension when a probe succeeds."""

    def build_extensions(self):
        mode = os.environ.get("ROMANCORE_OPENMP", "auto").lower()
        flags = None if mode in ("0", "no", "off", "false") else _openmp_flags(self.compiler)
        if flags is None:
            if mode == "force":
                raise RuntimeError("ROMANCORE_OPENMP=force but the compiler has no OpenMP")
            print("romancore: building WITHOUT OpenMP (kernels run serially)", file=sys.stderr)
        for ext in self.extensions:
            if flags:
                ext.extra_compile_args = list(ext.extra_compile_args) + flags
                ext.extra_link_args = list(ext.extra_link_args) + flags
        super().build_extensions()


# -ffp-contract=off: no fused multiply-adds, so results are bit-for-bit the same whatever
# the target CPU (the linearity correction matches stcal exactly).
COMPILE_ARGS = (
    [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-ffp-contract=off"]
)
MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]


def _ext(name: str, extra_args: tuple[str, ...] = ()) -> Extension:
    path = "src/" + name.replace(".", "/") + ".pyx"
    return Extension(
        name,
        [path],
        include_dirs=[np.get_include()],
        define_macros=MACROS,
        extra_compile_args=COMPILE_ARGS + ([] if sys.platform == "win32" else list(extra_args)),
    )


EXTENSIONS = [
    _ext("romancore._parallel"),
    _ext("romancore._saturation"),
    _ext("romancore._linearity"),
    # no FP traps assumed: lets the branch-free INL table look-up vectorise (values
    # unchanged: no reassociation, no contraction)
    _ext("romancore._readlinearity", ("-fno-trapping-math",)),
    _ext("romancore._decay"),
    _ext("romancore.ramp._fit"),
    _ext("romancore.ramp._finish"),
    # as _readlinearity: the branch-free min/max of the median network vectorise
    _ext("romancore.ramp._likely", ("-fno-trapping-math",)),
    _ext("romancore._srcmeasure"),
    _ext("romancore._segmentation"),
    _ext("romancore._convolve"),
    _ext("romancore._sigmaclip"),
    _ext("romancore._half"),
    _ext("romancore._refpix"),
    _ext("romancore._skystats"),
    _ext("romancore._drizzle"),
    _ext("romancore._outlier"),
    # branch-free selects of the INL look-up and the Poisson table count vectorise
    _ext("romancore._simramps", ("-fno-trapping-math",)),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": OpenMPBuildExt},
)
