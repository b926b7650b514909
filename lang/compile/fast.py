"""Inlined fast paths for arithmetic and comparison on ints and floats.

They duplicate lang.ops on purpose: a closure that tests the common types itself and
falls back to the general operation (`slow`) saves a call per operation, which is most
of the cost of a tight loop. Keep them in step with lang.ops."""

from __future__ import annotations

from typing import Any

from lang.ast import Span
from lang.compile.support import Fn
from lang.limits import PRODUCT_BITS_OK

# ---------------------------------------------------------------- inlined fast paths


def _fast_add(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def add(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a + b
        return slow(a, b, span)
    return add


def _fast_sub(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def sub(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a - b
        return slow(a, b, span)
    return sub


def _fast_mul(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def mul(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int and \
                a.bit_length() + b.bit_length() <= PRODUCT_BITS_OK:
            return a * b
        return slow(a, b, span)  # and its limit on the size of the product
    return mul


def _fast_lt(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def lt(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a < b
        return slow(a, b, span)
    return lt


def _fast_le(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def le(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a <= b
        return slow(a, b, span)
    return le


def _fast_gt(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def gt(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a > b
        return slow(a, b, span)
    return gt


def _fast_ge(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def ge(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a >= b
        return slow(a, b, span)
    return ge


def _fast_eq(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def eq(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        t = type(a)
        if t is type(b) and (t is int or t is str):
            return a == b
        return slow(a, b, span)
    return eq


def _fast_ne(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def ne(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        t = type(a)
        if t is type(b) and (t is int or t is str):
            return a != b
        return slow(a, b, span)
    return ne


FAST_BINARY = {"+": _fast_add, "-": _fast_sub, "*": _fast_mul, "<": _fast_lt,
               "<=": _fast_le, ">": _fast_gt, ">=": _fast_ge, "==": _fast_eq, "!=": _fast_ne}


def _const_add(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def add_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a + c
        return slow(a, c, span)
    return add_c


def _const_sub(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def sub_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a - c
        return slow(a, c, span)
    return sub_c


def _const_lt(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def lt_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a < c
        return slow(a, c, span)
    return lt_c


def _const_eq(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def eq_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a == c
        return slow(a, c, span)
    return eq_c


FAST_CONST = {"+": _const_add, "-": _const_sub, "<": _const_lt, "==": _const_eq}
