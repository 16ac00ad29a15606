"""Executes a parsed template the way text/template/exec.go does, errors included.

Errors carry Go's exact wording and location: ``template: NAME:LINE:COL: executing
"NAME" at <NODE>: MESSAGE``, where COL is the 0-based byte offset on that line.
"""

from __future__ import annotations

from rules.golang.fmt import (
    GoMap,
    GoSlice,
    GoStruct,
    quote,
    sprint,
    sprint_indirect,
    type_name,
)
from rules.template.funcs import CallError, GoFunc, is_true, truth
from rules.golang.time import GoTime
from rules.template.nodes import (
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
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
from rules.template.parser import Tree
from rules.template.values import ANY, MISSING, NIL_INTERFACE, NILLABLE, REFLECT_VALUE, GoMethods

MAX_EXEC_DEPTH = 100  # Go allows 100000 nested template calls; Python's stack allows fewer.


class ExecError(Exception):
    """A template execution error; ``str`` is Go's message."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Var:
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value


class State:
    """One execution: output buffer, variable stack and the node being evaluated."""

    def __init__(self, tree: Tree, funcs: dict[str, GoFunc], builtins: dict[str, GoFunc],
                 dot: object, depth: int = 0) -> None:
        self.tree = tree
        self.funcs = funcs
        self.builtins = builtins
        self.out: list[str] = []
        self.node: Node | None = None
        self.vars = [_Var("$", dot)]
        self.depth = depth

    # -- errors and variables

    def at(self, node: Node) -> None:
        self.node = node

    def errorf(self, message: str) -> ExecError:
        name = self.tree.name
        if self.node is None:
            return ExecError(f"template: {name}: {message}")
        text = self.tree.text.encode()[: self.node.pos]
        newline = text.rfind(b"\n")
        column = self.node.pos if newline < 0 else self.node.pos - (newline + 1)
        line = 1 + text.count(b"\n")
        return ExecError(f"template: {self.tree.parse_name}:{line}:{column}: executing "
                         f"{quote(name)} at <{self.node}>: {message}")

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: object) -> None:
        for var in reversed(self.vars):
            if var.name == name:
                var.value = value
                return
        raise self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: object) -> None:
        self.vars[-n].value = value

    def var_value(self, name: str) -> object:
        for var in reversed(self.vars):
            if var.name == name:
                return var.value
        raise self.errorf(f"undefined variable: {name}")

    # -- walking

    def walk(self, dot: object, node: Node) -> None:
        self.at(node)
        if isinstance(node, ActionNode):
            assert node.pipe is not None
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, BreakNode):
            raise _Break
        elif isinstance(node, ContinueNode):
            raise _Continue
        elif isinstance(node, CommentNode):
            pass
        elif isinstance(node, (IfNode, WithNode)):
            self.walk_if_or_with(isinstance(node, WithNode), dot, node)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        else:
            raise self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, is_with: bool, dot: object, node: IfNode | WithNode) -> None:
        mark = self.mark()
        try:
            assert node.pipe is not None and node.list is not None
            value = self.eval_pipeline(dot, node.pipe)
            ok, result = is_true(value)
            if not ok:
                raise self.errorf(f"if/with can't use {sprint(value)}")
            if result:
                self.walk(value if is_with else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(mark)

    def walk_range(self, dot: object, node: RangeNode) -> None:
        self.at(node)
        outer = self.mark()
        try:
            assert node.pipe is not None and node.list is not None
            value = self.eval_pipeline(dot, node.pipe)
            mark = self.mark()
            pipe, body = node.pipe, node.list

            def one_iteration(index: object, elem: object) -> None:
                if pipe.decl:
                    if pipe.is_assign:
                        first = index if len(pipe.decl) > 1 else elem
                        self.set_var(pipe.decl[0].ident[0], first)
                    else:
                        self.set_top_var(1, elem)
                if len(pipe.decl) > 1:
                    if pipe.is_assign:
                        self.set_var(pipe.decl[1].ident[0], elem)
                    else:
                        self.set_top_var(2, index)
                try:
                    self.walk(elem, body)
                except _Continue:
                    pass
                finally:
                    self.pop(mark)

            iterated = False
            try:
                if isinstance(value, GoSlice):
                    for i, elem in enumerate(list(value)):
                        iterated = True
                        one_iteration(i, elem)
                elif isinstance(value, GoMap):
                    for key in sorted(value):
                        iterated = True
                        one_iteration(key, value[key])
                elif isinstance(value, int) and not isinstance(value, bool):
                    if len(pipe.decl) > 1:
                        raise self.errorf(f"can't use {value} to iterate over more than one "
                                          "variable")
                    for i in range(value):
                        iterated = True
                        one_iteration(i, i)
                elif value is not None:
                    raise self.errorf(f"range can't iterate over {sprint(value)}")
            except _Break:
                return
            if not iterated and node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            self.pop(outer)

    def walk_template(self, dot: object, node: TemplateNode) -> None:
        self.at(node)
        tree = self.tree.tree_set.get(node.name)
        if tree is None or tree.root is None:
                raise self.errorf(f"template {quote(node.name)} not defined")
        if self.depth >= MAX_EXEC_DEPTH:
            raise self.errorf(f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
        inner = State(tree, self.funcs, self.builtins, new_dot, self.depth + 1)
        try:
            inner.walk(new_dot, tree.root)
        finally:
            self.out.extend(inner.out)

    # -- evaluation

    def eval_pipeline(self, dot: object, pipe: PipeNode) -> object:
        self.at(pipe)
        value: object = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is NIL_INTERFACE:  # Go digs into interface values between commands
                value = None
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.vars.append(_Var(variable.ident[0], value))
        return value

    def not_a_function(self, args: list[Node], final: object) -> None:
        if len(args) > 1 or final is not MISSING:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: object, cmd: CommandNode, final: object) -> object:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        raise self.errorf(f"can't evaluate command {first}")

    def ideal_constant(self, constant: NumberNode) -> object:
        self.at(constant)
        text = constant.text
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(
            c in text for c in "pP")
        if constant.is_complex:
            return constant.complex_value
        if constant.is_float and not is_hex_int and not text.startswith("'") and any(
                c in text for c in ".eEpP"):
            return constant.float_value
        if constant.is_int:
            return constant.int_value
        if constant.is_uint:
            raise self.errorf(f"{text} overflows int")
        return None

    def eval_field_node(self, dot: object, field: FieldNode, args: list[Node],
                        final: object) -> object:
        self.at(field)
        return self.eval_field_chain(dot, dot, field, field.ident, args, final)

    def eval_chain_node(self, dot: object, chain: ChainNode, args: list[Node],
                        final: object) -> object:
        self.at(chain)
        if isinstance(chain.node, NilNode):
            raise self.errorf(f"indirection through explicit nil in {chain}")
        assert chain.node is not None
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(self, dot: object, variable: VariableNode, args: list[Node],
                           final: object) -> object:
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args, final)

    def eval_field_chain(self, dot: object, receiver: object, node: Node, ident: list[str],
                         args: list[Node], final: object) -> object:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, [], MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_function(self, dot: object, node: IdentifierNode, cmd: Node, args: list[Node] | None,
                      final: object) -> object:
        self.at(node)
        name = node.ident
        function = self.funcs.get(name)
        is_builtin = False
        if function is None:
            function = self.builtins.get(name)
            is_builtin = function is not None
        if function is None:
            raise self.errorf(f'"{name}" is not a defined function')
        return self.eval_call(dot, function, is_builtin, cmd, name, args, final)

    def eval_field(self, dot: object, name: str, node: Node, args: list[Node], final: object,
                   receiver: object) -> object:
        if receiver is None:
            return None
        if receiver is NIL_INTERFACE:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, (GoTime, GoMethods)):
            method = receiver.method(name)
            if method is not None:
                params, impl = method
                return self.eval_call(dot, GoFunc(tuple(params), impl), False, node, name, args,
                                      final)
        has_args = len(args) > 1 or final is not MISSING
        if isinstance(receiver, GoStruct) and hasattr(receiver, "field"):
            found, value = receiver.field(name)
            if found:
                if has_args:
                    raise self.errorf(f"{name} has arguments but cannot be invoked as function")
                return value
        elif isinstance(receiver, GoMap):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, receiver.elem_zero)
        raise self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_call(self, dot: object, function: GoFunc, is_builtin: bool, node: Node, name: str,
                  args: list[Node] | None, final: object) -> object:
        arg_nodes = args[1:] if args else []
        params = function.params
        num_in = len(arg_nodes) + (0 if final is MISSING else 1)
        num_fixed = len(arg_nodes)
        if function.variadic:
            num_fixed = len(params) - 1
            if num_in < num_fixed:
                raise self.errorf(f"wrong number of args for {name}: want at least "
                                  f"{len(params) - 1} got {len(arg_nodes)}")
        elif num_in != len(params):
            raise self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")

        if is_builtin and name in ("and", "or"):
            value: object = None
            for arg in arg_nodes:
                value = self.eval_arg(dot, REFLECT_VALUE, arg)
                if truth(value) == (name == "or"):
                    return value
            if final is not MISSING:
                value = final
            return value

        argv: list[object] = []
        for i in range(min(num_fixed, len(arg_nodes))):
            argv.append(self.eval_arg(dot, params[i], arg_nodes[i]))
        if function.variadic:
            for arg in arg_nodes[len(argv):]:
                argv.append(self.eval_arg(dot, params[-1], arg))
        if final is not MISSING:
            expected = params[-1]
            if function.variadic and num_in - 1 < num_fixed:
                expected = params[num_in - 1]
            argv.append(self.validate_type(final, expected))
        if is_builtin and name == "call":
            # Go passes the callee's source text along, for its error message.
            argv.insert(0, str(arg_nodes[0]) if arg_nodes else "")
        try:
            result = function.impl(*argv)
        except CallError as err:
            self.at(node)
            raise self.errorf(f"error calling {name}: {err}") from None
        return result

    def validate_type(self, value: object, expected: str | None) -> object:
        if value is NIL_INTERFACE:
            if expected is None or expected in (ANY, REFLECT_VALUE):
                return None
            raise self.errorf(f"wrong type for value; expected {expected}; got {ANY}")
        if value is None or value is MISSING:
            if expected is None or expected in NILLABLE:
                return None
            raise self.errorf(f"invalid value; expected {expected}")
        if expected is None or expected in (ANY, REFLECT_VALUE):
            return value
        actual = type_name(value)
        if actual != expected:
            raise self.errorf(f"wrong type for value; expected {expected}; got {actual}")
        return value

    def eval_arg(self, dot: object, expected: str | None, node: Node) -> object:
        self.at(node)
        if isinstance(node, DotNode):
            return self.validate_type(dot, expected)
        if isinstance(node, NilNode):
            if expected is None or expected in NILLABLE:
                return None
            raise self.errorf(f"cannot assign nil to {expected}")
        if isinstance(node, FieldNode):
            return self.validate_type(self.eval_field_node(dot, node, [node], MISSING), expected)
        if isinstance(node, VariableNode):
            return self.validate_type(self.eval_variable_node(dot, node, [], MISSING), expected)
        if isinstance(node, PipeNode):
            return self.validate_type(self.eval_pipeline(dot, node), expected)
        if isinstance(node, IdentifierNode):
            return self.validate_type(self.eval_function(dot, node, node, None, MISSING), expected)
        if isinstance(node, ChainNode):
            return self.validate_type(self.eval_chain_node(dot, node, [], MISSING), expected)
        if expected == "bool":
            if isinstance(node, BoolNode):
                return node.value
            raise self.errorf(f"expected bool; found {node}")
        if expected == "float64":
            if isinstance(node, NumberNode) and node.is_float:
                return node.float_value
            raise self.errorf(f"expected float; found {node}")
        if expected == "int":
            if isinstance(node, NumberNode) and node.is_int:
                return node.int_value
            raise self.errorf(f"expected integer; found {node}")
        if expected == "string":
            if isinstance(node, StringNode):
                return node.text
            raise self.errorf(f"expected string; found {node}")
        if expected in (ANY, REFLECT_VALUE):
            return self.eval_empty_interface(dot, node)
        raise self.errorf(f"can't handle {node} for arg of type {expected}")

    def eval_empty_interface(self, dot: object, node: Node) -> object:
        self.at(node)
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, StringNode):
            return node.text
        raise self.errorf(f"can't handle assignment of {node} to empty interface argument")

    def print_value(self, node: Node, value: object) -> None:
        self.at(node)
        if value is None or value is MISSING:
            self.out.append("<no value>")
        else:
            self.out.append(sprint_indirect(value))


def execute(tree: Tree, funcs: dict[str, GoFunc], builtins: dict[str, GoFunc],
            data: object) -> str:
    """Run ``tree`` against ``data``; raise ExecError with Go's message on failure."""
    state = State(tree, funcs, builtins, data)
    if tree.root is None:
        raise state.errorf(f"{quote(tree.name)} is an incomplete or empty template")
    try:
        state.walk(data, tree.root)
    except RecursionError:
        raise state.errorf("exceeded maximum nesting depth") from None
    return "".join(state.out)
