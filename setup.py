"""What pyproject.toml cannot say: evt's C masker and its malloc setting, optional extensions.

When it cannot be built (no compiler, no Python headers), the install goes on and evt masks
with wsaccel, else in pure Python (lang/wire/frames.py says which is in use).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("lang.wire._xormask", ["lang/wire/_xormask.c"],
                             extra_compile_args=["-O3"], optional=True),
                   # how glibc's malloc gives memory back (lang/api.py tune_memory)
                   Extension("lang.runtime._malloc", ["lang/runtime/_malloc.c"], optional=True)])
