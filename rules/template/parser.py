"""Parser for Go templates, following text/template/parse/parse.go token for token.

Error messages and the line they name match Go's (``template: NAME:LINE: ...``).
"""

from __future__ import annotations

import cmath

from rules.golang.fmt import quote
from rules.template.lexer import Item, Lexer, Token
from rules.template.literals import (
    SyntaxErr,
    parse_float,
    parse_int,
    unquote,
    unquote_char,
)
from rules.template.nodes import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
    ElseNode,
    EndNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)

MAX_STACK_DEPTH = 100  # Go allows 10000 nested parentheses; Python's stack allows fewer.


class ParseError(Exception):
    """A parse failure, with Go's message and the byte offset of the offending token."""

    def __init__(self, message: str, line: int, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.pos = pos


class Tree:
    """One parsed template (the top level or a ``define``)."""

    def __init__(self, name: str, parse_name: str, text: str, funcs: set[str],
                 tree_set: dict[str, Tree]) -> None:
        self.name = name
        self.parse_name = parse_name
        self.text = text
        self.funcs = funcs
        self.tree_set = tree_set
        self.root: ListNode | None = None
        self.lex: Lexer | None = None
        self.token: list[Token] = [Token(Item.EOF, 0, "", 1)] * 3
        self.peek_count = 0
        self.vars: list[str] = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.stack_depth = 0

    # -- token stream

    def next(self) -> Token:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            assert self.lex is not None
            self.token[0] = self.lex.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Token) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Token, t1: Token) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Token:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        assert self.lex is not None
        self.token[0] = self.lex.next_item()
        return self.token[0]

    def next_non_space(self) -> Token:
        while True:
            token = self.next()
            if token.typ != Item.SPACE:
                return token

    def peek_non_space(self) -> Token:
        token = self.next_non_space()
        self.backup()
        return token

    # -- errors

    def errorf(self, message: str) -> ParseError:
        self.root = None
        token = self.token[0]
        return ParseError(f"template: {self.parse_name}:{token.line}: {message}", token.line,
                          token.pos)

    def expect(self, expected: Item, context: str) -> Token:
        token = self.next_non_space()
        if token.typ != expected:
            raise self.unexpected(token, context)
        return token

    def expect_one_of(self, first: Item, second: Item, context: str) -> Token:
        token = self.next_non_space()
        if token.typ not in (first, second):
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: Token, context: str) -> ParseError:
        if token.typ == Item.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            return self.errorf(f"{token}{extra}")
        return self.errorf(f"unexpected {token} in {context}")

    # -- entry points

    def start_parse(self, lex: Lexer) -> None:
        self.root = None
        self.lex = lex
        self.vars = ["$"]
        self.stack_depth = 0

    def parse_text(self) -> None:
        lex = Lexer(self.text, break_ok="break" not in self.funcs,
                    continue_ok="continue" not in self.funcs)
        self.start_parse(lex)
        self.parse()
        self.add()

    def add(self) -> None:
        existing = self.tree_set.get(self.name)
        if existing is None or is_empty_tree(existing.root):
            self.tree_set[self.name] = self
            return
        if not is_empty_tree(self.root):
            raise self.errorf(f"template: multiple definition of template {quote(self.name)}")

    def parse(self) -> None:
        self.root = ListNode(self.peek().pos)
        while self.peek().typ != Item.EOF:
            if self.peek().typ == Item.LEFT_DELIM:
                delim = self.next()
                if self.next_non_space().typ == Item.DEFINE:
                    definition = Tree("definition", self.parse_name, self.text, self.funcs,
                                      self.tree_set)
                    assert self.lex is not None
                    definition.start_parse(self.lex)
                    definition.parse_definition()
                    continue
                self.backup2(delim)
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                raise self.errorf(f"unexpected {node}")
            self.root.nodes.append(node)

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(Item.STRING, Item.RAW_STRING, context)
        try:
            self.name = unquote(name.val)
        except SyntaxErr as err:
            raise self.errorf(str(err)) from None
        self.expect(Item.RIGHT_DELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[ListNode, Node]:
        node_list = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != Item.EOF:
            node = self.text_or_action()
            if isinstance(node, (EndNode, ElseNode)):
                return node_list, node
            node_list.nodes.append(node)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.typ == Item.TEXT:
            return TextNode(token.pos, token.val)
        if token.typ == Item.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if token.typ == Item.COMMENT:
            return CommentNode(token.pos, token.val)
        raise self.unexpected(token, "input")

    def action(self) -> Node:
        token = self.next_non_space()
        handlers = {
            Item.BLOCK: self.block_control, Item.ELSE: self.else_control,
            Item.END: self.end_control, Item.IF: self.if_control,
            Item.RANGE: self.range_control, Item.TEMPLATE: self.template_control,
            Item.WITH: self.with_control,
        }
        if token.typ == Item.BREAK:
            return self.break_control(token, "break")
        if token.typ == Item.CONTINUE:
            return self.break_control(token, "continue")
        if token.typ in handlers:
            return handlers[token.typ]()
        self.backup()
        token = self.peek()
        return ActionNode(token.pos, token.line, self.pipeline("command", Item.RIGHT_DELIM))

    def break_control(self, keyword: Token, word: str) -> Node:
        token = self.next_non_space()
        if token.typ != Item.RIGHT_DELIM:
            raise self.unexpected(token, "{{" + word + "}}")
        if self.range_depth == 0:
            raise self.errorf("{{" + word + "}} outside {{range}}")
        if word == "break":
            return BreakNode(keyword.pos, keyword.line)
        return ContinueNode(keyword.pos, keyword.line)

    def pipeline(self, context: str, end: Item) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, token.line)
        while True:  # declarations; loops only for "range $i, $v :="
            variable = self.peek_non_space()
            if variable.typ != Item.VARIABLE:
                break
            self.next()
            token_after_variable = self.peek()
            following = self.peek_non_space()
            if following.typ in (Item.ASSIGN, Item.DECLARE):
                pipe.is_assign = following.typ == Item.ASSIGN
                self.next_non_space()
                pipe.decl.append(_variable(variable.pos, variable.val))
                self.vars.append(variable.val)
            elif following.typ == Item.CHAR and following.val == ",":
                self.next_non_space()
                pipe.decl.append(_variable(variable.pos, variable.val))
                self.vars.append(variable.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (Item.VARIABLE, Item.RIGHT_DELIM,
                                                     Item.RIGHT_PAREN):
                        continue
                    raise self.errorf("range can only initialize variables")
                raise self.errorf(f"too many declarations in {context}")
            elif token_after_variable.typ == Item.SPACE:
                self.backup3(variable, token_after_variable)
            else:
                self.backup2(variable)
            break
        operand_starts = (Item.BOOL, Item.CHAR_CONSTANT, Item.COMPLEX, Item.DOT, Item.FIELD,
                          Item.IDENTIFIER, Item.NUMBER, Item.NIL, Item.RAW_STRING, Item.STRING,
                          Item.VARIABLE, Item.LEFT_PAREN)
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in operand_starts:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                raise self.errorf(f"non executable command in pipeline stage {i + 2}")

    def parse_control(self, context: str) -> tuple[int, int, PipeNode, ListNode, ListNode | None]:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(context, Item.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            node_list, following = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(following, ElseNode):
                if context == "if" and self.peek().typ == Item.IF:
                    self.next()
                    else_list = ListNode(following.pos, [self.if_control()])
                elif context == "with" and self.peek().typ == Item.WITH:
                    self.next()
                    else_list = ListNode(following.pos, [self.with_control()])
                else:
                    else_list, following = self.item_list()
                    if not isinstance(following, EndNode):
                        raise self.errorf(f"expected end; found {following}")
            return pipe.pos, pipe.line, pipe, node_list, else_list
        finally:
            del self.vars[mark:]

    def _branch(self, cls: type[BranchNode], context: str) -> Node:
        pos, line, pipe, node_list, else_list = self.parse_control(context)
        return cls(pos, line, pipe, node_list, else_list)

    def if_control(self) -> Node:
        return self._branch(IfNode, "if")

    def range_control(self) -> Node:
        return self._branch(RangeNode, "range")

    def with_control(self) -> Node:
        return self._branch(WithNode, "with")

    def end_control(self) -> Node:
        return EndNode(self.expect(Item.RIGHT_DELIM, "end").pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ in (Item.IF, Item.WITH):
            return ElseNode(peek.pos, peek.line)
        token = self.expect(Item.RIGHT_DELIM, "else")
        return ElseNode(token.pos, token.line)

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = self.pipeline(context, Item.RIGHT_DELIM)
        block = Tree(name, self.parse_name, self.text, self.funcs, self.tree_set)
        assert self.lex is not None
        block.start_parse(self.lex)
        block.root, end = block.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        block.add()
        return TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = None
        if self.next_non_space().typ != Item.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, Item.RIGHT_DELIM)
        return TemplateNode(token.pos, token.line, name, pipe)

    def parse_template_name(self, token: Token, context: str) -> str:
        if token.typ in (Item.STRING, Item.RAW_STRING):
            try:
                return unquote(token.val)
            except SyntaxErr as err:
                raise self.errorf(str(err)) from None
        raise self.unexpected(token, context)

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == Item.SPACE:
                continue
            if token.typ in (Item.RIGHT_DELIM, Item.RIGHT_PAREN):
                self.backup()
            elif token.typ != Item.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not cmd.args:
            raise self.errorf("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == Item.FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == Item.FIELD:
                chain.fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain.pos, str(chain)[1:].split("."))
            if isinstance(node, VariableNode):
                return _variable(chain.pos, str(chain))
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                raise self.errorf(f"unexpected . after term {quote(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == Item.IDENTIFIER:
            if token.val not in self.funcs:
                raise self.errorf(f"function {quote(token.val)} not defined")
            return IdentifierNode(token.pos, token.val)
        if typ == Item.DOT:
            return DotNode(token.pos)
        if typ == Item.NIL:
            return NilNode(token.pos)
        if typ == Item.VARIABLE:
            return self.use_var(token.pos, token.val)
        if typ == Item.FIELD:
            return FieldNode(token.pos, token.val[1:].split("."))
        if typ == Item.BOOL:
            return BoolNode(token.pos, token.val == "true")
        if typ in (Item.CHAR_CONSTANT, Item.COMPLEX, Item.NUMBER):
            try:
                return new_number(token.pos, token.val, typ)
            except ValueError as err:
                raise self.errorf(str(err)) from None
        if typ == Item.LEFT_PAREN:
            if self.stack_depth >= MAX_STACK_DEPTH:
                raise self.errorf("max expression depth exceeded")
            self.stack_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", Item.RIGHT_PAREN)
            finally:
                self.stack_depth -= 1
        if typ in (Item.STRING, Item.RAW_STRING):
            try:
                text = unquote(token.val)
            except SyntaxErr as err:
                raise self.errorf(str(err)) from None
            return StringNode(token.pos, token.val, text)
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> Node:
        variable = _variable(pos, name)
        if variable.ident[0] in self.vars:
            return variable
        raise self.errorf(f"undefined variable {quote(variable.ident[0])}")


def _variable(pos: int, name: str) -> VariableNode:
    return VariableNode(pos, name.split("."))


def is_empty_tree(node: Node | None) -> bool:
    """parse.IsEmptyTree: nothing but whitespace text and comments."""
    if node is None or isinstance(node, CommentNode):
        return True
    if isinstance(node, ListNode):
        return all(is_empty_tree(n) for n in node.nodes)
    if isinstance(node, TextNode):
        return node.text.strip(" \t\r\n\v\f\x85\xa0") == ""
    return False


def new_number(pos: int, text: str, typ: Item) -> NumberNode:
    """parse.newNumber: record every Go numeric type that can hold the constant."""
    node = NumberNode(pos, text)
    if typ == Item.CHAR_CONSTANT:
        try:
            char, tail = unquote_char(text[1:], text[0])
        except SyntaxErr:
            raise ValueError("invalid syntax") from None
        if tail != "'":
            raise ValueError(f"malformed character constant: {text}")
        code = ord(char)
        node.int_value = node.uint_value = code
        node.float_value = float(code)
        node.is_int = node.is_uint = node.is_float = True
        return node
    if typ == Item.COMPLEX:
        try:
            node.complex_value = complex(text.replace("i", "j"))
        except ValueError:
            raise ValueError("expected integer") from None
        node.is_complex = True
        _simplify_complex(node)
        return node
    if text.endswith("i"):
        try:
            imaginary = parse_float(text[:-1])
        except ValueError:
            imaginary = None
        if imaginary is not None:
            node.is_complex = True
            node.complex_value = complex(0, imaginary)
            _simplify_complex(node)
            return node
    try:
        node.uint_value = parse_int(text, signed=False)
        node.is_uint = True
    except ValueError:
        pass
    try:
        node.int_value = parse_int(text, signed=True)
        node.is_int = True
        if node.int_value == 0:
            node.is_uint = True
            node.uint_value = 0
    except ValueError:
        pass
    if node.is_int:
        node.is_float = True
        node.float_value = float(node.int_value)
    elif node.is_uint:
        node.is_float = True
        node.float_value = float(node.uint_value)
    else:
        try:
            value = parse_float(text)
        except ValueError:
            value = None
        if value is not None and not cmath.isinf(value):
            if not any(c in text for c in ".eEpP"):
                raise ValueError(f"integer overflow: {quote(text)}")
            node.is_float = True
            node.float_value = value
            if value.is_integer() and -(2 ** 63) <= value < 2 ** 63:
                node.is_int = True
                node.int_value = int(value)
            if value.is_integer() and 0 <= value < 2 ** 64:
                node.is_uint = True
                node.uint_value = int(value)
    if not (node.is_int or node.is_uint or node.is_float):
        raise ValueError(f"illegal number syntax: {quote(text)}")
    return node


def _simplify_complex(node: NumberNode) -> None:
    node.is_float = node.complex_value.imag == 0
    if node.is_float:
        node.float_value = node.complex_value.real
        node.is_int = node.float_value.is_integer() and abs(node.float_value) < 2 ** 63
        if node.is_int:
            node.int_value = int(node.float_value)
        node.is_uint = node.float_value.is_integer() and 0 <= node.float_value < 2 ** 64
        if node.is_uint:
            node.uint_value = int(node.float_value)


def parse(name: str, text: str, funcs: set[str]) -> dict[str, Tree]:
    """Parse ``text`` as template ``name``; return every tree it defines, keyed by name."""
    tree_set: dict[str, Tree] = {}
    Tree(name, name, text, funcs, tree_set).parse_text()
    return tree_set
