"""``vpcwatch import-wazuh``: turn the aws-s3 wodle blocks of an ossec.conf into vpcwatch TOML.

Options with a counterpart are converted; the others are kept as comments saying why, and
credentials found in the file are never copied (not even as comments).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from core.config import BUCKET_TYPES, parse_day
from core.names import parse_duration

# Wazuh bucket option -> vpcwatch bucket key (same name unless listed).
_RENAMED = {"service_endpoint": "endpoint_url"}
_LISTS = ("aws_account_id", "regions")
_STRINGS = ("name", "path", "path_suffix", "aws_organization_id", "aws_account_alias",
            "aws_profile", "iam_role_arn", "external_id", "sts_endpoint",
            "service_endpoint")
_CREDENTIALS = ("access_key", "secret_key")


class WazuhImportError(Exception):
    pass


def import_wazuh(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise WazuhImportError(f"{path}: cannot read: {exc.strerror}") from None
    # ossec.conf has several top-level <ossec_config> blocks: not one XML document.
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    try:
        root = ET.fromstring(f"<root>{text}</root>")
    except ET.ParseError as exc:
        raise WazuhImportError(f"{path}: not valid XML: {exc}") from None
    wodles = [w for w in root.iter("wodle") if w.get("name") == "aws-s3"]
    if not wodles:
        raise WazuhImportError(f'{path}: no <wodle name="aws-s3"> block found')
    lines = [f"# Converted from {path} by vpcwatch import-wazuh.", ""]
    lines += _general(wodles[0])
    for number, wodle in enumerate(wodles, 1):
        if len(wodles) > 1:
            lines.append(f"# --- from aws-s3 block {number} ---")
        if _child(wodle, "disabled") == "yes":
            lines.append("# this block was disabled in Wazuh (<disabled>yes</disabled>)")
        interval = _child(wodle, "interval")
        if number > 1 and interval and interval != _child(wodles[0], "interval"):
            lines.append(f"# this block's <interval> {interval!a} is not used: vpcwatch polls "
                         "every bucket at [general]'s interval (the first block's)")
        for bucket in wodle.iter("bucket"):
            lines += _bucket(bucket)
        for service in wodle.iter("service"):
            lines.append(f"# <service type={service.get('type')!a}> is not read by vpcwatch")
    return "\n".join(lines).rstrip() + "\n"


def _child(element: ET.Element, tag: str) -> str | None:
    found = element.find(tag)
    return found.text.strip() if found is not None and found.text else None


def _general(wodle: ET.Element) -> list[str]:
    lines = ["[general]"]
    interval = _child(wodle, "interval")
    if interval:
        lines.append(_interval(interval))
    for option in ("run_on_start", "skip_on_error"):
        value = _child(wodle, option)
        if value in ("yes", "no"):
            lines.append(f"{option} = {'true' if value == 'yes' else 'false'}")
    for option in ("day", "wday", "time"):
        if _child(wodle, option):
            lines.append(f"# <{option}> has no equivalent: vpcwatch polls every interval")
    return [*lines, ""]


def _interval(interval: str) -> str:
    months = re.fullmatch(r"(\d{1,4})M", interval)  # Wazuh's months: vpcwatch counts in days
    value = f"{int(months[1]) * 30}d" if months else interval
    try:
        if parse_duration(value) < 1:
            raise ValueError(value)
    except ValueError:  # (what the configuration would refuse)
        return f"# interval {interval!a} is not a duration vpcwatch takes (1s to 100 years)"
    return f"interval = {_toml(value)}" + (f"  # Wazuh: {interval}" if months else "")


def _bucket(bucket: ET.Element) -> list[str]:
    kind = bucket.get("type", "")
    if kind not in BUCKET_TYPES:
        return [f"# <bucket type={kind!a}> is not read by vpcwatch (only vpcflow, cloudtrail)", ""]
    lines = ["[[bucket]]", f"type = {_toml(kind)}"]
    given: set[str] = set()
    for option in bucket:
        tag, value = option.tag, (option.text or "").strip()
        if tag in given:  # (a key twice is not TOML)
            lines.append(f"# <{_ascii(tag)}> given again ({value!a}): the first one is kept")
            continue
        given.add(tag)
        lines += _bucket_option(tag, value, option)
    return [*lines, ""]


def _bucket_option(tag: str, value: str, option: ET.Element) -> list[str]:
    if tag in _CREDENTIALS:
        return [f"# <{tag}> not copied: credentials come only from the AWS credential chain "
                "(use aws_profile or iam_role_arn)"]
    if tag in _STRINGS:
        return [f"{_RENAMED.get(tag, tag)} = {_toml(value)}"]
    if tag in _LISTS:
        items = [item.strip() for item in value.split(",") if item.strip()]
        return [f"{tag} = [{', '.join(_toml(item) for item in items)}]"]
    if tag == "only_logs_after":
        try:
            return [f'only_logs_after = "{parse_day(value).isoformat()}"']
        except ValueError:
            return [f"# only_logs_after {value!a} is not a date vpcwatch understands"]
    if tag == "iam_role_duration":
        seconds = re.fullmatch(r"[0-9]{1,9}", value)
        return [f'iam_role_duration = "{value}s"' if seconds else f"# {tag} = {value!a}"]
    if tag == "discard_regex":
        field = option.get("field", "")
        return [f"discard_field = {_toml(field)}", f"discard_regex = {_toml(value)}"]
    if tag == "remove_from_bucket":
        return ["# remove_from_bucket: vpcwatch never deletes from your bucket"]
    return [f"# <{_ascii(tag)}> has no vpcwatch equivalent"]


def _toml(text: str) -> str:
    """A TOML basic string of ``text`` that is printable ASCII whatever ``text`` holds:
    anything else escaped by its code point (JSON's escapes are not TOML's past U+FFFF)."""
    out = [f"\\{c}" if c in '"\\' else c if " " <= c <= "~" else
           f"\\u{ord(c):04X}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08X}" for c in text]
    return f'"{"".join(out)}"'


def _ascii(name: str) -> str:
    """An XML name as ASCII (a name may hold any letter): what a comment shows of it."""
    return name.encode("ascii", "backslashreplace").decode("ascii")
