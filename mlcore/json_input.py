"""The one way JSON that someone sent is read: the API's bodies, the layer builder's check, the training
form's network. Python's parser recurses once per `[` or `{`, so about a thousand of them end it with a
RecursionError (a 500, not an answer); a value nested deeper than any real request still parses, and
breaks the code that walks it later. Both are refused here with a plain message. Django-free."""
import json

MAX_DEPTH = 32  # a network description is 4 levels deep, a classify request 3


class UnreadableJson(ValueError):
    """JSON that was refused; its text is the message for the person or program that sent it."""


class TooDeep(UnreadableJson):
    """JSON nested more than `max_depth` levels."""


def read_json(text: str | bytes, what: str = "The request", max_depth: int = MAX_DEPTH):
    """`text` parsed, or UnreadableJson saying why not (`what` names it in the message)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(_too_deep(what, max_depth)) from None
    except ValueError as error:  # UnicodeDecodeError included
        raise UnreadableJson(f"{what} is not JSON: {error}.") from None
    if _depth(value) > max_depth:
        raise TooDeep(_too_deep(what, max_depth))
    return value


def _too_deep(what: str, max_depth: int) -> str:
    return f"{what} is nested more than {max_depth} levels deep (lists and objects inside each other)."


def _depth(value) -> int:
    """How many lists and objects are inside each other at the deepest point, counted without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item)
    return deepest
