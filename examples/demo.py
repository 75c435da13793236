"""A file to try completions on; the README runs the completion at the end of the last line."""


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)


def count_words(text):
    counts = {}
    for word in text.split():
        counts[word] = counts.get(