"""Hostile inputs: what an analyst may paste into a session id or category box, or a link may carry.

Each entry has a short name (its test id) and the text. Only blanks around a real session id
resolve to that session (`resolves`); everything else must get UNKNOWN_SESSION_ID, COUNT 0 or one
clear message, and must never change the database.

Some texts cannot travel every way: a NUL cannot be passed in argv (the kernel's strings end at
it), and a lone surrogate, which is what Python makes of non-UTF-8 bytes on a command line, cannot
be sent by a browser (Streamlit's protobuf messages carry UTF-8 only). `argv` and `browser` say so.
`markup` marks markdown and HTML that a page must show as typed, never render.
"""

from __future__ import annotations

from dataclasses import dataclass

VALID_ID = "u10003"  # a session of the hostile data set (see tests/test_hostile.py)
VALID_CATEGORY = "B00002"  # a category of VALID_ID's views
VALID_COUNT = 3  # how many of VALID_ID's views have VALID_CATEGORY at some level


@dataclass(frozen=True)
class Hostile:
    name: str
    text: str
    resolves: bool = False  # text.strip() is VALID_ID: it must find that session
    argv: bool = True  # can be passed as a command-line argument
    browser: bool = True  # can be typed in a browser and sent through Streamlit
    markup: bool = False  # markdown or HTML: shown as typed, never rendered

    def __str__(self) -> str:
        return self.name


HOSTILE = [
    # SQL injection: every query binds its parameters, so these are just odd ids.
    Hostile("sql_or", "u1' OR '1'='1"),
    Hostile("sql_or_after_valid", f"{VALID_ID}' OR '1'='1"),
    Hostile("sql_drop_session", "'; DROP TABLE session; --"),
    Hostile("sql_drop_product", f"{VALID_ID}; DROP TABLE product"),
    Hostile("sql_union", "' UNION SELECT session_id, start_time, end_time, gender FROM session -- "),
    Hostile("sql_comment", f"{VALID_ID}'-- "),
    Hostile("sql_hash_comment", f"{VALID_ID}' #"),
    Hostile("sql_sleep", "u1' AND SLEEP(5) AND '1'='1"),
    Hostile("sql_backslash_escape", "u1\\' OR 1=1 -- "),
    Hostile("sql_delete", "1; DELETE FROM product WHERE 1=1"),
    # quotes and backslashes
    Hostile("single_quote", "'"),
    Hostile("double_quote", 'u1"'),
    Hostile("all_quotes", "\"'`"),
    Hostile("backtick_table", "`session`"),
    Hostile("backslash", "\\"),
    Hostile("backslashes_n", "u1\\n\\0\\x00"),
    # LIKE wildcards: an exact match must not turn into a pattern
    Hostile("percent", "%"),
    Hostile("percent_prefix", f"{VALID_ID[:3]}%"),
    Hostile("underscore", "_"),
    Hostile("underscore_pattern", f"{VALID_ID[:-1]}_"),
    Hostile("star", "*"),
    # control characters
    Hostile("nul", "\x00", argv=False),
    Hostile("nul_after_valid", f"{VALID_ID}\x00", argv=False),
    Hostile("ansi_escape", "\x1b[31mred\x1b[0m\x07"),
    Hostile("newline_inside", "u1\nu2"),
    Hostile("crlf_header", "u1\r\nX-Injected: 1"),
    Hostile("tab", "\t"),
    # unicode
    Hostile("emoji", "👩‍💻🙂"),
    Hostile("emoji_after_valid", f"{VALID_ID}🙂"),
    Hostile("cjk", "性别预测"),
    Hostile("rtl_override", f"\u202e{VALID_ID}"),
    Hostile("rtl_mark", f"{VALID_ID}\u200f"),
    Hostile("zero_width_space", f"{VALID_ID[:-1]}\u200b{VALID_ID[-1]}"),
    Hostile("byte_order_mark", f"\ufeff{VALID_ID}"),
    Hostile("combining_marks", "Z\u0324\u0354\u0367a\u0308\u0356\u036dl\u036e\u0312g\u030co\u0319"),  # zalgo
    Hostile("fullwidth_digits", "ｕ１０００３"),
    Hostile("homoglyph", f"\u057d{VALID_ID[1:]}"),  # Armenian "ս" for "u"
    Hostile("upper_case", VALID_ID.upper()),  # ids are case-sensitive: U10003 is not u10003
    Hostile("category_lower_case", VALID_CATEGORY.lower()),
    Hostile("lone_surrogate", "\udcff", browser=False),  # b"\xff" on a command line
    # sizes
    Hostile("long_10000", "u" * 10_000),
    Hostile("long_10000_after_valid", VALID_ID + "x" * (10_000 - len(VALID_ID))),
    Hostile("long_256", "u" + "1" * 255),  # one more than the longest id
    Hostile("empty", ""),
    Hostile("whitespace", "   "),
    # paths and URLs
    Hostile("path_traversal", "../../etc/passwd"),
    Hostile("windows_path", "C:\\Windows\\System32"),
    Hostile("dot_dot", ".."),
    Hostile("file_url", "file:///etc/passwd"),
    # numbers and null-ish words
    Hostile("zero", "0"),
    Hostile("minus_one", "-1"),
    Hostile("float_overflow", "1e309"),
    Hostile("nan", "NaN"),
    Hostile("hex", "0x7FFFFFFF"),
    Hostile("null_word", "NULL"),
    Hostile("format_string", "%s%n{0}{session_id}"),
    Hostile("json", '{"SESSION_ID": "' + VALID_ID + '"}'),
    # markup a page must show as typed
    Hostile("markdown_link", "[click me](https://example.com/x)", markup=True),
    Hostile("markdown_bold", "**bold** _it_ `code` # head", markup=True),
    Hostile("html_script", "<script>alert(1)</script>", markup=True),
    Hostile("html_img", '<img src=x onerror="alert(1)">', markup=True),
    Hostile("streamlit_colour", ":red[alarm] :material/error:", markup=True),
    Hostile("latex", "$\\frac{1}{0}$", markup=True),
    # a valid id with blanks around it: that session, not UNKNOWN
    Hostile("valid_spaces", f"  {VALID_ID}  ", resolves=True),
    Hostile("valid_tab_newline", f"\t{VALID_ID}\n", resolves=True),
    Hostile("valid_nbsp", f"\u00a0{VALID_ID}\u00a0", resolves=True),
]

assert len({hostile.name for hostile in HOSTILE}) == len(HOSTILE) >= 40
