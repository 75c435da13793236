"""The file both editor tests type into, and what the embedded model suggests there (greedy, so it repeats)."""

STACK = """class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items
"""
ROW = 5  # 0-based row of "        self.items"
TYPED = "        self.items."
SUGGESTION = "append(item)"
