"""Playback buffer: the assistant's audio between the network and the speaker.

A bounded jitter buffer at the API's 24 kHz. It waits for `prebuffer_ms` (or the
end of an item) before it starts, so a slow network makes one gap at the start
rather than many; it remembers how many samples of each assistant item were
actually pulled for the speaker, because `conversation.item.truncate` must say
exactly what the user heard; and `flush()` makes the next pull silent, which is
how barge-in stops the speaker within one frame. A barge-in first only
`pause()`s: the next pull is silent too, but the reply stays queued from the
first sample the user did not hear, so `resume()` after a false alarm (a
cough, the device's own echo) goes on without a word lost.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np

from .upload import API_RATE_HZ

RATE_HZ = API_RATE_HZ  # what the service sends
# items whose played length is remembered; older ones cannot be truncated any more anyway
ITEMS_REMEMBERED = 16
# pulled audio kept to be put back on a pause: above the longest lead of live output (500 ms)
REWIND_MAX = RATE_HZ


class Playback:
    def __init__(self, prebuffer_ms: int = 100, capacity_ms: int = 120_000) -> None:
        self._prebuffer = prebuffer_ms * RATE_HZ // 1000
        self._capacity = capacity_ms * RATE_HZ // 1000
        self._queue: deque[tuple[str, np.ndarray]] = deque()
        self._queued = 0
        self._head = 0  # samples of the first queued chunk already played
        self._started = False
        self.paused = False
        self._recent: deque[tuple[str, np.ndarray]] = deque()  # pulled pieces, newest last
        self._recent_samples = 0
        self._ended: deque[str] = deque(maxlen=ITEMS_REMEMBERED)
        self._played: OrderedDict[str, int] = OrderedDict()
        self._received: OrderedDict[str, int] = OrderedDict()
        self.current_item = ""  # the item whose audio the speaker played last
        self.dropped_samples = 0  # audio refused because the buffer was full
        self.underruns = 0  # the speaker ran dry in the middle of an item
        # live audio pulls ahead of the speaker: what was pulled but not yet heard (samples at
        # this rate), and who else must drop queued audio on a barge-in (pause or flush)
        self.downstream_samples: Callable[[], int] = lambda: 0
        self.on_flush: list[Callable[[], None]] = []

    @property
    def queued_ms(self) -> float:
        return (self._queued - self._head) * 1000 / RATE_HZ

    @property
    def active(self) -> bool:
        """Audio is waiting or playing: the user would be interrupting."""
        return self._queued > self._head

    @property
    def interrupted_item(self) -> str:
        """The item a user speaking now would cut, "" if none: one with audio still waiting,
        or one that ran dry before its end (a network gap mid-reply: the user heard part of
        it, so it must still be truncated at what was heard)."""
        item = self.current_item
        if self.active or (item and item not in self._ended):
            return item
        return ""

    def push(self, item_id: str, pcm16: bytes) -> None:
        audio = np.frombuffer(pcm16, dtype="<i2")
        room = self._capacity - (self._queued - self._head)
        if len(audio) > room:
            self.dropped_samples += len(audio) - max(0, room)
            audio = audio[: max(0, room)]
        if not len(audio):
            return
        self._queue.append((item_id, audio))
        self._queued += len(audio)
        self._count(self._received, item_id, len(audio))

    def end_item(self, item_id: str) -> None:
        """No more audio will come for this item: play what is there without waiting."""
        if item_id not in self._ended:
            self._ended.append(item_id)

    def pull(self, n: int) -> np.ndarray:
        """The next `n` samples for the speaker (float32, silence when there is nothing to play)."""
        out = np.zeros(n, dtype=np.float32)
        if self.paused:
            return out
        waiting = self._queued - self._head
        if not self._started:
            last = self._queue[-1][0] if self._queue else ""
            if waiting and (waiting >= self._prebuffer or last in self._ended):
                self._started = True
            else:
                return out
        k = 0
        while k < n and self._queue:
            item, chunk = self._queue[0]
            take = min(n - k, len(chunk) - self._head)
            out[k : k + take] = chunk[self._head : self._head + take] / 32768.0
            self._remember(item, chunk[self._head : self._head + take])
            k += take
            self._head += take
            self._count(self._played, item, take)
            self.current_item = item
            if self._head == len(chunk):
                self._queue.popleft()
                self._queued -= len(chunk)
                self._head = 0
        if k < n:
            # ran dry: a gap inside an unfinished item is an underrun; wait for the prebuffer again
            if self.current_item and self.current_item not in self._ended:
                self.underruns += 1
            self._started = False
        return out

    def flush(self) -> None:
        """Barge-in: drop everything queued; the next pull is silence. The item being played
        is over for the speaker (its rest is never played), so it is cut only once."""
        if self.current_item:
            self.end_item(self.current_item)
        self._queue.clear()
        self._queued = 0
        self._head = 0
        self._started = False
        self.paused = False
        self._recent.clear()
        self._recent_samples = 0
        for listener in self.on_flush:
            listener()

    def pause(self) -> None:
        """A possible barge-in: silent from the next pull, and what was pulled but never heard
        goes back to the front of the queue, so `played_ms` and a resume are both exact."""
        if self.paused:
            return
        unheard = min(self.downstream_samples(), self._recent_samples)
        for listener in self.on_flush:
            listener()
        self.paused = True
        if self._head:  # the first chunk, partly played: keep only its rest
            item, chunk = self._queue[0]
            self._queue[0] = (item, chunk[self._head :])
            self._queued -= self._head
            self._head = 0
        while unheard > 0:
            item, piece = self._recent.pop()
            back = piece[len(piece) - min(unheard, len(piece)) :]
            if len(back) < len(piece):
                self._recent.append((item, piece[: len(piece) - len(back)]))
            self._recent_samples -= len(back)
            self._queue.appendleft((item, back))
            self._queued += len(back)
            self._played[item] = max(0, self._played.get(item, 0) - len(back))
            unheard -= len(back)
        if self._recent:
            self.current_item = self._recent[-1][0]

    def resume(self) -> None:
        """The interruption was not the user: the reply goes on from where it paused."""
        self.paused = False

    def played_ms(self, item_id: str) -> int:
        """What the user heard of the item: pulled, less what still waits downstream."""
        played = self._played.get(item_id, 0)
        if item_id == self.current_item:
            played -= min(played, self.downstream_samples())
        return played * 1000 // RATE_HZ

    def received_ms(self, item_id: str) -> int:
        return self._received.get(item_id, 0) * 1000 // RATE_HZ

    def _remember(self, item: str, piece: np.ndarray) -> None:
        self._recent.append((item, piece))
        self._recent_samples += len(piece)
        while self._recent_samples - len(self._recent[0][1]) >= REWIND_MAX:
            self._recent_samples -= len(self._recent.popleft()[1])

    @staticmethod
    def _count(table: OrderedDict[str, int], item: str, n: int) -> None:
        table[item] = table.get(item, 0) + n
        table.move_to_end(item)
        while len(table) > ITEMS_REMEMBERED:
            table.popitem(last=False)
