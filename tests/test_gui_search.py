"""Finding things in a big graph, in the real main window: Ctrl+F, the minimap, Space, breadcrumbs.

The graph is the residual chain of modules of test_gui_big_graphs (`blocks.K`: W, b, linear, tanh,
add), opened folded into boxes, so a search hit hides in a closed box until it is revealed.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication
from test_gui_big_graphs import open_window as open_shown
from test_gui_big_graphs import press, settle

from propscope.gui.canvas.search import NodeSearch

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                     "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def open_window(qtbot, nodes: int, folded: bool):
    """The window, shown and active: window shortcuts (Ctrl+F, Space) need an active window."""
    window = open_shown(qtbot, nodes, folded)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.canvas.setFocus()
    return window


def type_query(qtbot, window, text: str) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F, CTRL)
    settle()
    edit = window.navigation.search.edit
    assert edit.hasFocus()
    qtbot.keyClicks(edit, text)
    settle()


def node_in_view(window, name: str) -> bool:
    canvas = window.canvas
    return canvas.visible_scene_rect().contains(canvas.graph_scene.node_rect(name).center())


def test_the_index_matches_name_op_and_module_in_graph_order():
    from test_gui_big_graphs import block_chain

    index = NodeSearch(block_chain(60).graph)
    assert index.find("blocks.7.tanh") == ["blocks.7.tanh"]
    assert index.find("TANH")[:2] == ["blocks.0.tanh", "blocks.1.tanh"]  # by op, any case
    assert len(index.find("linear")) == len(index.find("blocks.")) // 5  # op "linear" in each block
    assert index.find("blocks.10 bias") == ["blocks.10.bias"]  # every word must match
    assert set(index.find("blocks.3")) >= {"blocks.3.weight", "blocks.3.add"}  # by module path
    assert index.find("nothing-like-this") == [] and index.find("  ") == []


def test_ctrl_f_finds_a_hidden_node_unfolds_its_box_and_centres_it(qtbot):
    window = open_window(qtbot, 5000, folded=True)
    canvas = window.canvas
    target = "blocks.700.tanh"
    folding = canvas.folding_for_session()
    assert folding.rep(target) != target  # hidden in a closed box
    type_query(qtbot, window, target)
    folding = canvas.folding_for_session()
    assert folding.rep(target) == target  # its boxes opened
    assert window.selection.node == target
    assert node_in_view(window, target) and canvas.zoom() >= 0.5  # centred at a zoom where it reads
    assert window.navigation.search.count.text() == "1 of 1"
    canvas.viewport().repaint()


def test_typing_is_incremental_and_enter_walks_the_hits(qtbot):
    window = open_window(qtbot, 600, folded=False)
    search = window.navigation.search
    type_query(qtbot, window, "blocks.1")  # blocks.1, blocks.10..19, blocks.100..: many hits
    first = search.hits[search.at]
    many = len(search.hits)
    assert many > 20 and window.selection.node == first
    qtbot.keyClicks(search.edit, "0.a")  # "blocks.10.a": narrows as you type
    settle()
    assert search.hits == ["blocks.10.add"] and window.selection.node == "blocks.10.add"
    search.edit.setText("")
    qtbot.keyClicks(search.edit, "tanh")
    settle()
    seen = [window.selection.node]
    for _ in range(3):
        qtbot.keyClick(search.edit, Qt.Key.Key_Return)
        settle()
        seen.append(window.selection.node)
    assert len(set(seen)) == 4 and all(n.endswith(".tanh") for n in seen)
    assert all(node_in_view(window, n) for n in seen[-1:])
    qtbot.keyClick(search.edit, Qt.Key.Key_Return, SHIFT)  # back one
    settle()
    assert window.selection.node == seen[-2]
    qtbot.keyClick(search.edit, Qt.Key.Key_Escape)
    settle()
    assert not search.isVisible() and window.canvas.hasFocus()


def test_typing_in_the_find_box_does_not_step_or_fit(qtbot):
    """F (fit), Space (go to step), arrows and Home/End belong to the box while it has the focus."""
    window = open_window(qtbot, 600, folded=False)
    s = window.bridge.session
    type_query(qtbot, window, "f ")
    edit = window.navigation.search.edit
    for key in (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Home, Qt.Key.Key_End):
        qtbot.keyClick(edit, key)
    assert s.cursor == 0 and edit.text() == "f "


def test_no_match_says_so_and_keeps_the_view(qtbot):
    window = open_window(qtbot, 600, folded=True)
    canvas = window.canvas
    before = canvas.visible_scene_rect()
    type_query(qtbot, window, "zzz-no-such-node")
    assert window.navigation.search.count.text() == "no match"
    assert canvas.visible_scene_rect() == before


def test_space_is_free_and_goes_to_the_current_step(qtbot):
    window = open_window(qtbot, 5000, folded=False)
    space = QKeySequence("Space")
    owners = [a.objectName() for a in window.findChildren(type(window.navigation.current_action))
              if any(k == space for k in a.shortcuts())]
    assert owners == ["goToCurrent"]  # an ambiguous shortcut would fire neither
    press(qtbot, window, Qt.Key.Key_F10, times=30)
    press(qtbot, window, Qt.Key.Key_F)  # fitted: the step's node is a dot somewhere
    canvas = window.canvas
    name = canvas.graph_scene.current
    window.training_dock.raise_()
    for focus in (canvas, window.steps, window.training.play):  # a button with the focus must not eat it
        press(qtbot, window, Qt.Key.Key_F)
        focus.setFocus()
        settle()
        assert QApplication.focusWidget() is focus
        qtbot.keyClick(focus, Qt.Key.Key_Space)
        settle()
        assert node_in_view(window, name) and canvas.zoom() >= 0.5, focus
        assert window.training.runner.state != "running"
    assert window.bridge.session.cursor == 30  # Space moved the view, not the cursor


def test_the_minimap_shows_the_view_and_a_click_jumps_there(qtbot):
    window = open_window(qtbot, 5000, folded=False)
    canvas, minimap = window.canvas, window.navigation.minimap
    canvas.go_to_current()
    settle()
    assert minimap.isVisible()  # the graph overflows the view
    graph = canvas.graph_scene.graph_rect
    # the outlined part is the view: its centre maps back to the view's centre
    seen = minimap._to_map().mapRect(canvas.visible_scene_rect())
    back = minimap.scene_point(seen.center())
    assert abs(back.x() - canvas.visible_scene_rect().center().x()) < graph.width() * 0.01
    far = QPoint(minimap.width() - 4, minimap.height() // 2)  # the right end: the end of the chain
    qtbot.mouseClick(minimap, Qt.MouseButton.LeftButton, pos=far)
    settle()
    want = minimap.scene_point(QPointF(far))
    assert canvas.visible_scene_rect().contains(want)
    assert canvas.visible_scene_rect().center().x() > graph.center().x()
    minimap.repaint()
    press(qtbot, window, Qt.Key.Key_F)  # the whole graph in view: no minimap needed
    assert not minimap.isVisible()
    canvas.go_to_current()
    window.navigation.minimap_action.setChecked(False)
    assert not minimap.isVisible()


def test_breadcrumbs_show_the_module_path_and_fold_it(qtbot):
    window = open_window(qtbot, 600, folded=False)
    crumbs = window.navigation.breadcrumbs
    window.selection.select("x")  # outside every module: hidden, then made again for a node inside
    settle()
    window.bridge.session.seek(40)  # the selection follows the step into a block
    settle()
    assert crumbs.isVisible() and crumbs.width() >= crumbs.sizeHint().width()
    window.selection.select("blocks.12.tanh")
    settle()
    titles = [b.text() for b in crumbs.crumbs]
    assert crumbs.isVisible() and titles[-1] == "blocks.12.tanh" and "blocks.12" in titles[-2]
    assert crumbs.width() >= crumbs.sizeHint().width() and all(b.width() > 0 for b in crumbs.crumbs)  # readable
    window.selection.select("blocks.12.add")  # a sibling: the same modules, the node's crumb renamed
    settle()
    assert [b.text() for b in crumbs.crumbs] == [*titles[:-1], "blocks.12.add"]
    window.selection.select("blocks.13.tanh")  # another module
    settle()
    assert "blocks.13" in crumbs.crumbs[-2].text()
    window.selection.select("blocks.12.tanh")
    settle()
    key = crumbs.crumbs[-2].property("unitKey")
    crumbs.crumbs[-2].click()  # fold blocks.12 into a box
    settle()
    folding = window.canvas.folding_for_session()
    assert key in folding.closed and folding.rep("blocks.12.tanh") == key
    assert window.canvas.visible_scene_rect().contains(window.canvas.graph_scene.centers[key])
    window.selection.select("x")  # outside every module: nothing to show
    settle()
    assert not crumbs.isVisible()


def test_breadcrumbs_grow_with_projector_mode_and_shrink_back(qtbot):
    """Projector mode's larger font reaches the crumbs after they were made: the bar is sized again,
    so no module name is elided ("bl…11"), and again when it ends."""
    window = open_window(qtbot, 600, folded=False)
    crumbs = window.navigation.breadcrumbs
    window.set_projector(True, full_screen=False)
    window.selection.select("blocks.12.tanh")  # crumbs made while the new font is still on its way
    settle()
    big = crumbs.size()
    assert crumbs.isVisible() and crumbs.width() >= crumbs.sizeHint().width()
    assert all(b.width() >= b.sizeHint().width() for b in crumbs.crumbs)
    window.set_projector(False)
    settle()
    assert crumbs.width() < big.width() and crumbs.height() < big.height()
    assert crumbs.width() >= crumbs.sizeHint().width()
    assert all(b.width() >= b.sizeHint().width() for b in crumbs.crumbs)


def test_breadcrumbs_keep_their_widgets_from_step_to_step(qtbot):
    """Each step selects its node; the crumbs were made anew each time (the old ones deleted later), so
    stepping without a pause for events piled up hidden-behind widgets that every frame painted."""
    from PySide6.QtWidgets import QWidget

    window = open_window(qtbot, 600, folded=False)
    crumbs = window.navigation.breadcrumbs
    session = window.bridge.session
    session.seek(40)
    settle()
    made = set(crumbs.findChildren(QWidget))
    first = list(crumbs.crumbs)
    for _ in range(30):  # no event loop in between, as a held key or a run of steps
        session.step()
    assert set(crumbs.findChildren(QWidget)) == made and crumbs.crumbs == first
    assert crumbs.crumbs[-1].text() == window.selection.node
    shown = [w for w in crumbs.findChildren(QWidget) if not w.isHidden()]
    assert len(shown) == 2 * len(crumbs.crumbs) - 1  # the crumbs and a separator between each two
    crumbs.crumbs[-1].click()  # the node's own crumb centres it
    assert window.canvas.visible_scene_rect().contains(window.canvas.graph_scene.node_rect(window.selection.node))


def test_the_minimap_takes_a_fifth_of_the_canvas_at_most_and_none_when_small():
    from propscope.gui.canvas.minimap import map_size

    def px(size: float) -> int:
        return round(size)

    w, h = map_size(678, 427, 2.0, px)  # a 1024x768 window's canvas, a graph twice as wide as tall
    assert w <= 678 * 0.2 and h <= 427 * 0.2 and abs(w / h - 2.0) < 0.1
    w, h = map_size(1570, 760, 1.0, px)  # a big canvas: the graph's shape, at most 200 x 140
    assert w == h == 140
    assert map_size(1570, 760, 300.0, px) == (200, 20)  # a long chain: a strip, thick enough to click
    assert map_size(340, 400, 2.0, px) is None and map_size(600, 170, 2.0, px) is None  # too small a canvas
    def px2(size: float) -> int:  # projector scale: larger, within the same fifth
        return round(size * 2)

    w, h = map_size(1570, 760, 1.0, px2)
    assert w <= 1570 * 0.2 and h <= 760 * 0.2


def test_the_minimap_leaves_the_step_and_the_selected_node_in_sight(qtbot):
    """At 1024x768 the map sat over the graph's bottom right, where the next ops come into view: when the step's
    node or the selected one lies under it, it moves to the other bottom corner, and still jumps on a click."""
    window = open_window(qtbot, 600, folded=False)
    window.resize(1024, 768)
    settle()
    canvas, minimap = window.canvas, window.navigation.minimap
    session = window.bridge.session
    session.seek(40)
    canvas.set_zoom(1.0)
    settle()
    name = session.current.node.name
    assert minimap.isVisible() and window.selection.node == name
    spot = minimap.geometry()
    assert spot.width() <= canvas.viewport().width() * 0.2 and spot.height() <= canvas.viewport().height() * 0.2
    # bring the step's node under the map: the view's point under the map's centre onto the node's centre
    under = canvas.mapToScene(spot.center())
    node = canvas.graph_scene.node_rect(name).center()
    canvas.centerOn(canvas.visible_scene_rect().center() + (node - under))
    settle()
    drawn = canvas.mapFromScene(canvas.graph_scene.node_rect(name)).boundingRect()
    assert canvas.viewport().rect().contains(drawn.center())
    assert not minimap.geometry().intersects(drawn)
    assert minimap.geometry().left() < canvas.viewport().width() // 2  # the bottom-left corner now
    far = QPoint(minimap.width() - 4, minimap.height() // 2)  # still a map: a click goes there
    qtbot.mouseClick(minimap, Qt.MouseButton.LeftButton, pos=far)
    settle()
    assert canvas.visible_scene_rect().contains(minimap.scene_point(QPointF(far)))
