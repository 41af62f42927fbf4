"""report.json formatting: indented objects, lists of numbers on one line (readable diffs)."""
import json


def format_report(report: dict) -> str:
    def encode(value, indent: str) -> str:
        if isinstance(value, dict) and value:
            inner = indent + "  "
            items = ",\n".join(f"{inner}{json.dumps(k)}: {encode(v, inner)}"
                               for k, v in value.items())
            return "{\n" + items + "\n" + indent + "}"
        if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            inner = indent + "  "
            return "[\n" + ",\n".join(inner + encode(v, inner) for v in value) + "\n" + \
                indent + "]"
        return json.dumps(value)
    return encode(report, "") + "\n"
