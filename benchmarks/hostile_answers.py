"""Hostile answers for ``reward_bench.py``'s hostile section, grouped by class.

Generated here, not taken from any corpus. ``CLASSES`` maps a class name to the answers put
in ``\\boxed{}``; each answer is scored against ``42`` and against itself. ``RESPONSES``
are whole hostile responses. ``marker`` is a path a successful code execution would create.
"""

from __future__ import annotations

N, K = "1000000000", "500000000"


def classes(marker: str) -> dict[str, list[str]]:
    return {
        "code strings": [
            f"__import__('os').system('touch {marker}')", "eval('2+2')", "exec('import os')",
            "().__class__.__bases__[0].__subclasses__()", "(lambda: 42)()", "42.real",
            "sum([i for i in range(10)])", "'42'", "math.floor(42.5)"],
        "binomials, every spelling": [
            f"\\binom{{{N}}}{{{K}}}", f"\\dbinom{{{N}}}{{{K}}}", f"\\tbinom{{{N}}}{{{K}}}",
            f"{{{N} \\choose {K}}}", f"{N} \\choose {K}", "\\binom{10^{10}}{10^{5}}",
            "\\binom{2^{40}}{2^{39}}", "\\binom{x}{1000000000}", f"\\binom{{1000000000+n}}{{{K}}}",
            f"\\binom{{\\left({N}\\right)}}{{{K}}}", f"C({N},{K})", f"\\mathrm{{C}}({N},{K})",
            f"C_{{{N}}}^{{{K}}}", f"{{}}^{{{N}}}C_{{{K}}}", f"binomial({N},{K})",
            "\\binom{100000}{50000}", "\\binom{\\binom{100}{50}}{7}"],
        "factorials": [
            "1000000000!", "(10^9)!", "10^9!", "10^{9}!", "2^{30}!", "{10^9}!",
            "\\left(10^9\\right)!", "99999!", "1000!!", "100000!!", "(10!)!", "10!!!!",
            "(1000000000x)!", "factorial(1000000000)", "\\frac{1000000000!}{999999999!}",
            "\\operatorname{factorial}(1000000000)"],
        "Gamma and exp": [
            "\\Gamma(1000000000)", "\\Gamma(10^{9})", "\\Gamma\\left(1000000000\\right)",
            "\\Gamma{1000000000}", "\\Gamma 1000000000", "gamma(1000000000)",
            "\\operatorname{Gamma}(1000000000)", "\\Gamma(99999999999)", "\\Gamma(100000)",
            "\\exp(\\exp(\\exp(100)))", "e^{e^{e^{e^{10}}}}", "\\Gamma(\\Gamma(10))",
            "\\Gamma(\\Gamma(\\Gamma(5)))"],
        "sums and products": [
            f"\\prod_{{k=1}}^{{{N}}} k", "\\prod_{k=1}^{10^9} k", "\\prod_{k=1}^{100000} k",
            "\\prod\\limits_{k=1}^{100000} k", "\\prod^{100000}_{k=1} k",
            "\\prod_{i=1}^{300}\\prod_{j=1}^{300} (i+j)", f"\\sum_{{k=1}}^{{{N}}} k^k",
            "\\sum_{k=1}^{100000} k^k", "\\sum_{k=1}^{1000000} \\frac{1}{k}",
            "\\sum_{k=1}^{100000} k!"],
        "powers and towers": [
            "9**9**9**9", "10^{10^{10^{10}}}", "2^{2^{2^{2^{2^{2}}}}}", "x^{99999999}",
            "{10}^{{10}^{100}}", "10 ^ { 10 ^ { 8 } }", "2^{10^4\\cdot 10^4}",
            "2^{9999 \\times 9999}", "2^{\\frac{1000000000}{1}}", "2^{1000000000/1}",
            "99999999^{9999}", "7^{7^{7}}", "\\lfloor 10^{9999}\\pi \\rfloor",
            "\\begin{pmatrix}1&1\\\\1&0\\end{pmatrix}^{1000000000}", "\\sqrt[1000000000]{2}"],
        "polynomial expansion": [
            "(x+1)^{1000}", "(x+y+z)^{60}", "(x+y+z)^{20}", "(x+1)^{50}",
            "+".join(f"x^{{{i}}}" for i in range(40))],
        "long and odd digits": [
            "1" * 5000, "7" * 299, "١٢٣٤٥٦٧٨٩٠" * 40, "９" * 500, "9⁹⁹⁹⁹⁹⁹⁹⁹",
            "1,000," * 60 + "0", "0." + "3" * 299, "1e999999999",
            ",".join(str(i) for i in range(100))],
        "nesting": [
            "(" * 5000 + "1" + ")" * 5000, "\\frac{" * 2000 + "1" + "}{2}" * 2000,
            "\\frac{1}{" * 23 + "2" + "}" * 23, "\\sqrt{" * 1000 + "2" + "}" * 1000,
            "\\sin(" * 20 + "1" + ")" * 20, "\\left(" * 40 + "1" + "\\right)" * 40,
            "|" * 100 + "1" + "|" * 100,
            "\\begin{pmatrix}" + "\\\\".join(["&".join(["1"] * 20)] * 20) + "\\end{pmatrix}",
            "\\det\\begin{pmatrix}" + "\\\\".join(["&".join(["x"] * 8)] * 8) + "\\end{pmatrix}"],
        "garbage text": [
            "4\x002\x00", "\ud800" * 3 + "7" + "\udfff", "\u202e24", "4\u200b2",
            "1+" * 100_000 + "1", "a" * 50_000],
    }


RESPONSES = {
    "200 KB response": ("<think>" + "Let me think. " * 15_000
                        + "</think><answer>\\boxed{42}</answer>", "42"),
    "20k repeated tags": ("<think>" + "</think><answer>\\boxed{" * 20_000, "1"),
}
