"""What a person SEES: Qt windows that observe a Session.

Importing this package loads no Qt; its modules do. The CLI imports `propscope.gui.app` only
when a window is asked for, so `import propscope` and every other command stay headless.
"""
