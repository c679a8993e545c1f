"""Read the authors' published error curves back from their vector figure files.

The figures figs/comp_error_{dataset}.pdf (prediction error) and figs/equiv_error_{dataset}.pdf
(equivariance error) of github.com/takerum/meta_sequential_prediction are matplotlib PDFs:
every curve is one stroked polyline in page coordinates, every axis tick a short tick mark
followed by its label, every legend entry a short line in the curve's style followed by its
text. Fitting the page -> data map of each axis to its ticks turns every vertex back into
(horizon, value); the PDF stores coordinates to 1e-6 points, so the numbers come back to
~1e-5 of the axis range (the figures give the mean over seeds only, no spread).

The figures are not part of this project (fetch the authors' repository; only the numbers
are kept, in reference_results.csv with the figure named per row):

    python -m msp.reference.extract_curves --git-dir REPO.git             # print the curves
    python -m msp.reference.extract_curves --figs DIR --update msp/reference/reference_results.csv

--update replaces every curve row of the CSV and keeps the rows of the authors' tables
(the equivariance table at T_p = 1, which has the std over seeds). Only the standard
library is used: zlib for the streams and a small interpreter of the content-stream
operators that matplotlib writes (q Q cm, m l c re h, S B f n W, RG G d w, BT Tf Td Tj TJ ET).
"""

import argparse
import csv
import io
import math
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# legend text (spaces removed) -> model name of the registry
MODEL_OF_LABEL = {
    "Neuraltransition": "neural_trans",
    "NeuralM*": "neuralM",
    "Rec.model": "lstsq_rec",
    "Oursw/fixedblocks": "lstsq_multi",
    "Ours": "lstsq",
    "Ours(1storder)": "lstsq",
    "Ours(2ndorder)": "holstsq",
}
FIGURES = {"prediction": "comp_error_{}.pdf", "equivariance": "equiv_error_{}.pdf"}
DATASETS = ("mnist", "mnist_bg", "mnist_bg_full", "mnist_accl", "3dshapes", "smallNORB")
TOKEN = re.compile(rb"\((?:\\.|[^\\)])*\)|/[^\s/\[\]()<>]+|[-+]?(?:\d+\.?\d*|\.\d+)|\[|\]|[A-Za-z*'\"]+")


# ---- PDF reading --------------------------------------------------------------------------


def page_content(pdf: bytes) -> bytes:
    """The decompressed content stream of the (single) page of a matplotlib PDF."""
    match = re.search(rb"/Contents (\d+) 0 R", pdf)
    if not match:
        raise ValueError("no page /Contents found: not a single-page matplotlib PDF")
    header = re.search(rb"(?:^|\s)%s 0 obj" % match.group(1), pdf)
    start = pdf.index(b"stream", header.end()) + len(b"stream")
    start += 2 if pdf[start : start + 2] == b"\r\n" else 1
    end = pdf.index(b"endstream", start)
    return zlib.decompress(pdf[start:end])


GLYPH_TEXT = {"space": " ", "period": ".", "comma": ",", "asterisk": "*", "slash": "/", "hyphen": "-",
              "minus": "-", "plus": "+", "equal": "=", "underscore": "_", "parenleft": "(", "parenright": ")",
              "fi": "fi", "fl": "fl", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def _object(pdf: bytes, number: bytes) -> bytes:
    """The text of object `number` up to its endobj."""
    header = re.search(rb"(?:^|\s)%s 0 obj" % number, pdf)
    if not header:
        raise ValueError(f"object {number.decode()} missing")
    return pdf[header.end() : pdf.index(b"endobj", header.end())]


def font_encodings(pdf: bytes) -> dict[str, dict[int, str]]:
    """Resource name of each font (F1, ...) -> {character code: text} from its /Differences
    (matplotlib's Type3 fonts number their glyphs freely, e.g. the 'fi' ligature as 0)."""
    resources = re.search(rb"/Font (\d+) 0 R", pdf)
    if not resources:
        return {}
    fonts = {}
    for name, number in re.findall(rb"/(\w+) (\d+) 0 R", _object(pdf, resources.group(1))):
        diff = re.search(rb"/Differences \[(.*?)\]", _object(pdf, number), re.S)
        codes, code = {}, 0
        for token in (diff.group(1).split() if diff else []):
            if token[:1] == b"/":
                glyph = token[1:].decode()
                codes[code] = GLYPH_TEXT.get(glyph, glyph if len(glyph) == 1 else "?")
                code += 1
            else:
                code = int(token)
        fonts[name.decode()] = codes
    return fonts


def _pdf_string(token: bytes, encoding: dict[int, str]) -> str:
    """(…) literal -> text through the current font's encoding."""
    body = re.sub(rb"\\([()\\])", rb"\1", token[1:-1])
    return "".join(encoding.get(byte, chr(byte)) for byte in body)


def _multiply(a, b):
    """Affine matrices (a b c d e f) as in PDF: a then b."""
    return (a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3],
            a[4] * b[0] + a[5] * b[2] + b[4], a[4] * b[1] + a[5] * b[3] + b[5])


def _apply(m, x, y):
    return (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])


@dataclass
class Stroke:
    points: list  # [(x, y)] page coordinates
    style: tuple  # (stroke colour, dash pattern, line width)
    clipped: bool  # drawn inside the axes' clip rectangle (curves, grid) or not (ticks, legend)
    order: int


@dataclass
class Text:
    text: str
    x: float
    y: float
    order: int


@dataclass
class _State:
    ctm: tuple = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    colour: tuple = (0.0,)
    dash: tuple = ()
    width: float = 1.0
    clipped: bool = False
    extra: dict = field(default_factory=dict)


def read_page(content: bytes, fonts: dict | None = None) -> tuple[list[Stroke], list[Text]]:
    """Interpret a content stream -> stroked paths and text blocks, in drawing order.
    fonts: font_encodings() of the file (without: codes read as Latin-1)."""
    fonts, encoding = fonts or {}, {}
    stack, state, operands = [], _State(), []
    path, strokes, texts, order = [], [], [], 0
    text = None
    for token in TOKEN.findall(content):
        if token[:1] in b"(/[]" or re.fullmatch(rb"[-+]?(?:\d+\.?\d*|\.\d+)", token):
            operands.append(token)
            continue
        op = token.decode()
        num = [float(t) for t in operands if re.fullmatch(rb"[-+]?(?:\d+\.?\d*|\.\d+)", t)]
        if op == "q":
            stack.append(_State(state.ctm, state.colour, state.dash, state.width, state.clipped))
        elif op == "Q":
            state = stack.pop()
        elif op == "cm":
            state.ctm = _multiply(tuple(num[-6:]), state.ctm)
        elif op == "RG":
            state.colour = tuple(round(v, 4) for v in num[-3:])
        elif op == "G":
            state.colour = (round(num[-1], 4),)
        elif op == "w":
            state.width = num[-1]
        elif op == "d":
            inside = operands[operands.index(b"[") + 1 : operands.index(b"]")] if b"[" in operands else []
            state.dash = tuple(float(t) for t in inside)
        elif op == "m":
            path.append([_apply(state.ctm, *num[-2:])])
        elif op == "l":
            path[-1].append(_apply(state.ctm, *num[-2:]))
        elif op == "c":
            path[-1].append(_apply(state.ctm, *num[-2:]))  # end point only: curves mark legend boxes
        elif op == "re":
            x, y, w, h = num[-4:]
            path.append([_apply(state.ctm, x, y), _apply(state.ctm, x + w, y + h)])
        elif op == "W":
            state.clipped = True
        elif op in ("S", "s", "B", "B*", "b", "b*"):
            for sub in path:
                strokes.append(Stroke(sub, (state.colour, state.dash, state.width), state.clipped, order))
                order += 1
            path = []
        elif op in ("f", "f*", "F", "n"):
            path = []
        elif op == "Tf" and operands and operands[0][:1] == b"/":
            encoding = fonts.get(operands[0][1:].decode(), {})
        elif op == "BT":
            text = {"matrix": state.ctm, "pos": None, "parts": []}
        elif op == "Td" and text is not None:
            text["matrix"] = _multiply((1, 0, 0, 1, num[-2], num[-1]), text["matrix"])
            text["pos"] = text["pos"] or _apply(text["matrix"], 0, 0)
        elif op in ("Tj", "TJ") and text is not None:
            text["parts"] += [_pdf_string(t, encoding) for t in operands if t[:1] == b"("]
        elif op == "ET" and text is not None:
            x, y = text["pos"] or _apply(text["matrix"], 0, 0)
            texts.append(Text("".join(text["parts"]), x, y, order))
            order += 1
            text = None
        operands = []
    return strokes, texts


# ---- from drawing to data -----------------------------------------------------------------


def _fit_axis(pairs, name):
    """[(page coordinate, tick value)] -> (slope, intercept) of a linear axis, checked."""
    if len(pairs) < 2:
        raise ValueError(f"{name} axis: fewer than two labelled ticks")
    n = len(pairs)
    mx = sum(p for p, _ in pairs) / n
    mv = sum(v for _, v in pairs) / n
    slope = sum((p - mx) * (v - mv) for p, v in pairs) / sum((p - mx) ** 2 for p, _ in pairs)
    intercept = mv - slope * mx
    worst = max(abs(slope * p + intercept - v) for p, v in pairs)
    span = max(v for _, v in pairs) - min(v for _, v in pairs)
    if worst > 1e-4 * span:
        raise ValueError(f"{name} axis is not linear in its tick labels (residual {worst:g}): log scale?")
    return slope, intercept


def _number(text):
    try:
        return float(text.replace("\u2212", "-"))
    except ValueError:
        return None


def read_curves(pdf: bytes) -> dict[str, list[tuple[float, float]]]:
    """A matplotlib line plot -> {legend label: [(x, y) in data units]} for every curve.

    Ticks: two-point axis-parallel strokes outside the clip, each followed by its label.
    Legend entries: horizontal strokes outside the clip in a curve's style, each followed by
    the text blocks up to the next entry (legend markers are skipped). Curves: strokes inside the clip whose style (colour,
    dash, width) is that of exactly one legend entry.
    """
    strokes, texts = read_page(page_content(pdf), font_encodings(pdf))
    events = sorted([(s.order, s) for s in strokes] + [(t.order, t) for t in texts], key=lambda e: e[0])
    def axis_parallel(points):
        return len({round(x, 4) for x, _ in points}) == 1 or len({round(y, 4) for _, y in points}) == 1

    curve_styles = {s.style for s in strokes if s.clipped and not axis_parallel(s.points)}  # not grid lines
    x_ticks, y_ticks, legend_lines = [], [], []
    for i, (_, item) in enumerate(events):
        if not isinstance(item, Stroke) or item.clipped:
            continue
        pts = item.points
        following = [e for _, e in events[i + 1 : i + 2] if isinstance(e, Text)]
        if len(pts) == 2 and following and _number(following[0].text) is not None:
            (x0, y0), (x1, y1) = pts
            if abs(x0 - x1) < 1e-6 and 0 < abs(y0 - y1) < 10:
                x_ticks.append((x0, _number(following[0].text)))
            elif abs(y0 - y1) < 1e-6 and 0 < abs(x0 - x1) < 10:
                y_ticks.append((y0, _number(following[0].text)))
        elif (len({round(y, 4) for _, y in pts}) == 1 and pts[-1][0] - pts[0][0] > 10
              and item.style in curve_styles):  # a legend line (spines have no curve's style)
            legend_lines.append(item)
    legend = []  # (style, label): the text blocks between one legend line and the next
    for line, nxt in zip(legend_lines, legend_lines[1:] + [None]):
        end = nxt.order if nxt is not None else math.inf
        label = "".join(t.text for t in texts if line.order < t.order < end)
        legend.append((line.style, label))
    fx, fy = _fit_axis(x_ticks, "x"), _fit_axis(y_ticks, "y")
    curves = {}
    for style, label in legend:
        matching = [s for s in strokes if s.clipped and s.style == style and len(s.points) >= 2]
        if len(matching) != 1:
            raise ValueError(f"legend entry {label!r}: {len(matching)} curves in its style, expected 1")
        curves[label] = [(fx[0] * x + fx[1], fy[0] * y + fy[1]) for x, y in matching[0].points]
    if not curves:
        raise ValueError("no legend entries found")
    return curves


def model_and_metric(evaluation: str, label: str) -> tuple[str, str]:
    """Legend text -> (model, metric). Equivariance legends end in 'p' (L^p) or 'pequiv'
    (L^p_equiv); the script L of the label is a drawn glyph, not text."""
    key = label.replace(" ", "")
    metric = "mse"
    if evaluation == "equivariance":
        for suffix, name in (("pequiv", "Lp_equiv"), ("p", "Lp")):
            if key.endswith(suffix):
                key, metric = key[: -len(suffix)], name
                break
        else:
            raise ValueError(f"equivariance legend {label!r} names neither L^p nor L^p_equiv")
    if key not in MODEL_OF_LABEL:
        raise ValueError(f"unknown legend label {label!r}: add it to MODEL_OF_LABEL")
    return MODEL_OF_LABEL[key], metric


def curve_rows(evaluation: str, dataset: str, pdf: bytes, source: str) -> list[dict]:
    """One figure -> reference rows (evaluation, dataset, model, horizon, metric, mean, std, source)."""
    rows = []
    for label, points in read_curves(pdf).items():
        model, metric = model_and_metric(evaluation, label)
        for x, y in points:
            horizon = round(x)
            if abs(x - horizon) > 1e-3:
                raise ValueError(f"{source}, {label!r}: vertex at x = {x:.5f} is not a horizon")
            rows.append({"evaluation": evaluation, "dataset": dataset, "model": model, "horizon": horizon,
                         "metric": metric, "mean": round(y, 4), "std": "", "source": source})
    return rows


def extract_all(read_figure) -> list[dict]:
    """read_figure(file name) -> bytes or None; every curve of every known figure."""
    rows = []
    for evaluation, pattern in FIGURES.items():
        for dataset in DATASETS:
            name = pattern.format(dataset)
            pdf = read_figure(name)
            if pdf is not None:
                rows += curve_rows(evaluation, dataset, pdf, f"figure figs/{name} (curve)")
    return rows


# ---- the reference CSV --------------------------------------------------------------------

KEY = ("evaluation", "dataset", "model", "horizon", "metric")


def merge_into_reference(path: Path, curves: list[dict]) -> tuple[str, list[tuple]]:
    """Replace every non-table row of the reference CSV with the extracted curves, keeping
    the table rows (they carry the std over seeds) where both exist. -> (new CSV text,
    [(key, table mean, curve mean)] for the overlaps)."""
    text = Path(path).read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    tables = [r for r in rows if "table" in r["source"] and r["std"] != ""]
    kept = {tuple(str(r[k]) for k in KEY): r for r in tables}
    overlaps = []
    out = list(tables)
    for r in curves:
        key = tuple(str(r[k]) for k in KEY)
        if key in kept:
            overlaps.append((key, float(kept[key]["mean"]), r["mean"]))
            continue
        out.append(r)
    buf = io.StringIO()
    buf.write("\n".join(comments) + "\n")
    writer = csv.DictWriter(buf, fieldnames=[*KEY, "mean", "std", "source"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(out)
    return buf.getvalue(), overlaps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--figs", type=Path, help="folder holding the authors' figs/*.pdf")
    where.add_argument("--git-dir", help="git directory of the authors' repository (figs/ read at HEAD)")
    parser.add_argument("--update", type=Path, help="reference CSV whose curve rows are replaced")
    args = parser.parse_args(argv)

    def read_figure(name):
        if args.figs:
            path = args.figs / name
            return path.read_bytes() if path.exists() else None
        got = subprocess.run(["git", f"--git-dir={args.git_dir}", "show", f"HEAD:figs/{name}"], capture_output=True)
        return got.stdout if got.returncode == 0 else None

    rows = extract_all(read_figure)
    if not rows:
        print("no figure found", file=sys.stderr)
        return 1
    if args.update:
        text, overlaps = merge_into_reference(args.update, rows)
        tmp = args.update.with_name(f".{args.update.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.update)
        for key, table, curve in overlaps:
            print(f"kept table row {','.join(key)}: table {table:g}, curve {curve:g}", file=sys.stderr)
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=[*KEY, "mean", "std", "source"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
