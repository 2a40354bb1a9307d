"""One summary row: the CSV, the CLI table, the app's table and the HTML report show the same columns and text."""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import replace

import pytest

from quant_core.cli import format_table
from quant_core.compare import CompareOptions, CompareRequest, run_compare
from quant_core.errors import ConversionError
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.report import report_dict, variants_csv
from quant_core.results.summary import COLUMNS, MEAN_ABS_DIFF, Unit, markdown_table, summarize
from ui import charts
from ui.html_report import render_report

BACKEND_ERROR = "tf_converter failed: tflite/kernels/kernel_util.cc:349 check failed"
BEST_CSS = "background-color: rgba(33, 195, 84, 0.25)"


@pytest.fixture(scope="module")
def result(model_files, image_dir, labels_file, tmp_path_factory) -> CompareResult:
    """A real labelled comparison of the tiny model in which the backend refuses int8."""
    from quant_core import compare
    from quant_core.cache import ArtifactCache

    build = compare.build_variant

    def int8_refused(source, recipe, *args):
        if recipe.mode is Mode.INT8:
            raise ConversionError(BACKEND_ERROR)
        return build(source, recipe, *args)

    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.FLOAT16), Recipe(Mode.DYNAMIC_RANGE), Recipe(Mode.INT8))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare, "build_variant", int8_refused)
        result = run_compare(request, cache=ArtifactCache(tmp_path_factory.mktemp("summary-cache")))
    assert [v.name for v in result.variants] == ["float32", "float16", "dynamic_range", "int8"]
    assert [v.ok for v in result.variants] == [True, True, True, False]
    return result


# --- each view read back as {variant: {column title: text}} and the set of highlighted (variant, title) ----------

def cli_view(result: CompareResult) -> dict[str, dict[str, str]]:
    lines = [*format_table(result).splitlines(), ""]
    start = lines.index("") + 1
    header, *rows = lines[start:lines.index("", start)]  # the table ends at the next blank line (failures follow)
    titles = re.split(r" {2,}", header.strip())
    out = {}
    for line in rows:
        cells = re.split(r" {2,}", line.strip())
        out[cells[0]] = dict(zip(titles, cells + [""] * (len(titles) - len(cells))))  # an empty last cell is cut
    return out


def csv_view(result: CompareResult) -> tuple[list[str], dict[str, dict[str, str]]]:
    rows = list(csv.reader(io.StringIO(variants_csv(result))))
    return rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def app_view(result: CompareResult) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]]]:
    styler = charts.styled_summary(result).hide(axis="index")
    header, *rows = [line.split("\t") for line in styler.to_string(delimiter="\t").splitlines()]
    names = [row[0] for row in rows]
    best = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", styler.to_html()):
        if BEST_CSS in body:
            best |= {(names[int(r)], header[int(c)]) for r, c in re.findall(r"_row(\d+)_col(\d+)", selectors)}
    return {row[0]: dict(zip(header, row)) for row in rows}, best


def html_view(result: CompareResult) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]], set[tuple[str, str]]]:
    table = re.search(r"<h2>Summary</h2>.*?(<table>.*?</table>)", render_report(result), re.S).group(1)
    cell = r'<t[hd](?: class="(\w+)")?>(.*?)</t[hd]>'
    header, *rows = [re.findall(cell, tr) for tr in re.findall(r"<tr>(.*?)</tr>", table)]
    titles = [html.unescape(text) for _, text in header]
    out, classes = {}, {"best": set(), "failed": set()}
    for row in rows:
        name = html.unescape(row[0][1])
        out[name] = {t: html.unescape(text) for t, (_, text) in zip(titles, row)}
        for t, (klass, _) in zip(titles, row):
            if klass:
                classes[klass].add((name, t))
    return out, classes["best"], classes["failed"]


def expected_best(result: CompareResult) -> set[tuple[str, str]]:
    """The best cells worked out from the variants' raw numbers, not from the summary module."""
    ok = [v for v in result.variants if v.ok and not v.warning]  # a warned variant is never best
    quantized = [v for v in ok if v.mode is not Mode.FLOAT32]  # float32 scores perfectly against itself
    picks = {"size (KB)": (ok, lambda v: v.size_bytes, min),
             "x smaller": (ok, lambda v: round(1 / v.size_ratio, 2), max),
             "memory (KB)": (ok, lambda v: v.memory.runtime_bytes, min),
             "median ms": (ok, lambda v: round(v.latency.median_ms, 3), min),
             "p90 ms": (ok, lambda v: round(v.latency.p90_ms, 3), min),
             "agreement": (quantized, lambda v: round(v.top1_agreement, 3), max),
             "accuracy": (ok, lambda v: round(v.accuracy, 3), max),
             "mean |Δp|": (quantized, lambda v: round(v.mean_abs_diff, 4), min)}
    best = set()
    for title, (vs, key, pick) in picks.items():
        top = pick(key(v) for v in vs)
        best |= {(v.name, title) for v in vs if key(v) == top}
    return best


TITLES = ["variant", "status", "size (KB)", "x smaller", "memory (KB)", "median ms", "p90 ms", "agreement", "accuracy",
          "mean |Δp|", "integer-only"]
# 3 labelled classes: no top-5 columns; a failure's reason beneath the table, not in it; no warning: no note


def test_every_view_shows_the_same_columns_and_the_same_text(result):
    table = summarize(result)
    assert [c.title for c in table.columns] == TITLES
    expected = {r.name: {c.title: table.text(r, c) for c in table.columns} for r in table.rows}
    cli = cli_view(result)
    app, _ = app_view(result)
    page, _, _ = html_view(result)
    for view in (cli, app, page):
        assert list(view) == ["float32", "float16", "dynamic_range", "int8"]
        assert {name: list(cells) for name, cells in view.items()} == dict.fromkeys(view, TITLES)
        assert view == expected
    assert list(charts.summary_frame(result).columns) == TITLES
    # The text is the variant's own numbers at one precision per column, independent of the summary module.
    for v in result.variants[:3]:
        assert expected[v.name] | {"status": "ok"} == {
            "variant": v.name, "status": "ok", "size (KB)": f"{v.size_bytes / 1024:,.1f}",
            "x smaller": f"{1 / v.size_ratio:.2f}x", "memory (KB)": f"{v.memory.runtime_bytes / 1024:,.0f}",
            "median ms": f"{v.latency.median_ms:.3f}",
            "p90 ms": f"{v.latency.p90_ms:.3f}", "agreement": f"{v.top1_agreement:.1%}",
            "accuracy": f"{v.accuracy:.1%}", "mean |Δp|": f"{v.mean_abs_diff:.4f}",
            "integer-only": "yes" if v.ops.integer_only else "no"}


def test_the_csv_has_every_column_and_the_numbers_the_tables_print(result):
    header, rows = csv_view(result)
    assert header == [c.key for c in COLUMNS]
    assert header[:3] == ["mode", "status", "size_bytes"] and "top5_agreement" in header  # stable for scripts
    table = summarize(result)
    parse = {Unit.KB: int, Unit.FACTOR: float, Unit.PERCENT: float, Unit.NUMBER: float, Unit.TEXT: str,
             Unit.YES_NO: lambda s: {"True": True, "False": False}[s]}
    for row in table.rows:
        for c in table.columns:
            cell = rows[row.name][c.key]
            value = None if cell == "" else parse[c.unit](cell)
            assert c.text(c.shown(value)) == table.text(row, c), (row.name, c.key, cell)
    f16 = result.variant("float16")
    assert rows["float16"]["size_bytes"] == str(f16.size_bytes)  # exact bytes, where tables show KB
    assert float(rows["float16"]["top1_agreement"]) == round(f16.top1_agreement, 3)  # a fraction, not "100.0%"
    assert float(rows["float16"]["mean_abs_prob_diff"]) == round(f16.mean_abs_diff, 4)


def test_the_app_and_the_html_report_highlight_the_same_best_values(result):
    _, app_best = app_view(result)
    _, html_best, _ = html_view(result)
    assert app_best == html_best == expected_best(result)
    assert ("float32", "agreement") not in html_best and ("float32", "mean |Δp|") not in html_best


def test_the_best_mean_abs_diff_is_highlighted_in_the_html_report(result):
    """Distinct |Δp| per variant: exactly the smallest one among the quantized variants is marked."""
    diffs = {"float32": 0.0, "float16": 0.00231, "dynamic_range": 0.01874}
    tweaked = replace(result, variants=tuple(
        replace(v, mean_abs_diff=diffs[v.name]) if v.ok else v for v in result.variants))
    page, html_best, _ = html_view(tweaked)
    app, app_best = app_view(tweaked)
    marked = {name for name, title in html_best if title == "mean |Δp|"}
    assert marked == {name for name, title in app_best if title == "mean |Δp|"} == {"float16"}
    assert page["float16"]["mean |Δp|"] == app["float16"]["mean |Δp|"] == "0.0023"
    assert page["dynamic_range"]["mean |Δp|"] == "0.0187"
    assert summarize(tweaked).best(MEAN_ABS_DIFF) == 0.0023


def test_one_rounding_rule_in_every_view(result):
    from quant_core.runner import Latency

    def odd(v: VariantResult) -> VariantResult:
        return replace(v, size_bytes=1536, size_ratio=0.3, top1_agreement=0.95849, mean_abs_diff=0.00123456,
                       latency=Latency(1.23456, 2.0004, 1.5, 1.0, 20, 5, 1)) if v.name == "float16" else v

    tweaked = replace(result, variants=tuple(odd(v) for v in result.variants))
    want = {"size (KB)": "1.5", "x smaller": "3.33x", "median ms": "1.235", "p90 ms": "2.000",
            "agreement": "95.8%", "mean |Δp|": "0.0012"}
    app, _ = app_view(tweaked)
    page, _, _ = html_view(tweaked)
    for view in (cli_view(tweaked), app, page):
        assert {t: view["float16"][t] for t in want} == want
    _, rows = csv_view(tweaked)
    assert {k: rows["float16"][k] for k in ("size_bytes", "x_smaller", "latency_median_ms", "latency_p90_ms",
                                            "top1_agreement", "mean_abs_prob_diff")} == {
        "size_bytes": "1536", "x_smaller": "3.33", "latency_median_ms": "1.235", "latency_p90_ms": "2.0",
        "top1_agreement": "0.958", "mean_abs_prob_diff": "0.0012"}
    frame = charts.summary_frame(tweaked).set_index("variant")
    assert frame.loc["float16", "size (KB)"] == 1.5 and frame.loc["float16", "agreement"] == 0.958
    # The JSON report keeps its keys and its finer digits, through the same rounding helper.
    published = {v["name"]: v for v in report_dict(tweaked)["variants"]}["float16"]
    assert published["top1_agreement"] == 0.9585 and published["mean_abs_prob_diff"] == 0.001235
    assert published["size_ratio"] == 0.3 and published["latency_ms"]["median"] == 1.2346


def test_a_failed_variant_appears_everywhere_with_its_error_beneath_the_table(result):
    error = result.variant("int8").error
    assert error == BACKEND_ERROR
    page, _, failed = html_view(result)
    app, _ = app_view(result)
    cli = cli_view(result)
    for view in (cli, app, page):
        assert view["int8"]["status"] == "failed" and "error" not in view["int8"]
        assert view["int8"]["size (KB)"] == view["int8"]["agreement"] == "–"
    assert failed == {("int8", "status")}
    _, rows = csv_view(result)
    assert rows["int8"]["status"] == "failed" and rows["int8"]["error"] == error and rows["int8"]["size_bytes"] == ""
    assert format_table(result).splitlines()[-1] == f"int8 failed: {error}"
    assert f'</table><div class="note failed">int8 failed: {html.escape(error)}</div>' in render_report(result)


def test_columns_follow_labels_top5_and_warnings(result):
    unlabelled = replace(result, images=tuple(replace(i, label=None, label_index=None) for i in result.images),
                         variants=tuple(replace(v, accuracy=None, top5_accuracy=None) for v in result.variants),
                         source_accuracy=None)
    many = replace(result, class_names=(*result.class_names, "cyan", "magenta", "yellow"))
    warned = replace(result, variants=tuple(
        replace(v, warning="changes the top-1 prediction on 40% of images") if v.name == "dynamic_range" else v
        for v in result.variants))
    cases = [(unlabelled, {"accuracy"}, set()), (many, set(), {"top-5 agreement", "top-5 accuracy"}),
             (warned, set(), {"note"})]
    for tweaked, gone, added in cases:
        titles = (set(TITLES) - gone) | added
        app, _ = app_view(tweaked)
        page, _, _ = html_view(tweaked)
        for view in (cli_view(tweaked), app, page):
            assert set(view["float16"]) == titles
        header, _ = csv_view(tweaked)
        assert header == [c.key for c in COLUMNS]  # the CSV header never changes
    assert cli_view(warned)["dynamic_range"]["note"] == "changes the top-1 prediction on 40% of images"
    assert "source model accuracy" not in format_table(unlabelled)
    assert "source model accuracy 100.0%" in format_table(result)


def markdown_view(result: CompareResult) -> tuple[dict[str, dict[str, str]], set[tuple[str, str]]]:
    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    header, rule, *rows = markdown_table(result).split("\n\n")[0].splitlines()  # failures follow a blank line
    titles = cells(header)
    assert cells(rule)[:3] == ["---", "---", "---:"]  # text left, numbers right
    out, best = {}, set()
    for row in map(cells, rows):
        out[row[0]] = {t: c.removeprefix("**").removesuffix("**") for t, c in zip(titles, row)}
        best |= {(row[0], t) for t, c in zip(titles, row) if c.startswith("**")}
    return out, best


def test_the_readme_markdown_table_is_the_same_summary_with_the_best_values_in_bold(result):
    markdown, bold = markdown_view(result)
    app, highlighted = app_view(result)
    assert markdown == app
    assert bold == highlighted == expected_best(result)
    assert markdown_table(result).endswith(f"|\n\nint8 failed: {BACKEND_ERROR}\n")  # the reason beneath the table
