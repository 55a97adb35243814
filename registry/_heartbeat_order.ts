/**
 * The registry's agents in order of their last heartbeat, so the periodic
 * stale sweep reads only the oldest instead of every agent.
 *
 * @module
 */
import type { Slot } from "./_slot.ts";

/** How far a heartbeat that arrives out of order is walked back to keep the list sorted. */
const HEARTBEAT_WALK_LIMIT = 8;

/**
 * A doubly linked list of slots through their `hbPrev`/`hbNext` fields,
 * oldest `lastHeartbeat` first: linked through the slots themselves so a
 * heartbeat moves its agent to the end without allocating.
 */
export class HeartbeatOrder {
  #head: Slot | null = null;
  #tail: Slot | null = null;
  /** A heartbeat went in out of order; the list is sorted before it is next read. */
  #unsorted = false;

  /**
   * The agent with the oldest heartbeat, from which `hbNext` leads on in
   * order; after heartbeats arrived out of time order (a clock that went
   * back) it first re-sorts the list, once.
   */
  oldest(): Slot | null {
    if (this.#unsorted) this.#resort();
    return this.#head;
  }

  /** Sets `lastHeartbeat` and keeps the list ordered, adding the slot if it is not in it. */
  touch(slot: Slot, now: number): void {
    slot.info.lastHeartbeat = now;
    const prevSlot = slot.hbPrev;
    const inList = prevSlot !== null || this.#head === slot;
    if (inList && this.#tail === slot) {
      if (prevSlot === null || prevSlot.info.lastHeartbeat <= now) return;
    }
    if (inList) {
      const next = slot.hbNext;
      if (prevSlot === null) this.#head = next;
      else prevSlot.hbNext = next;
      if (next === null) this.#tail = prevSlot;
      else next.hbPrev = prevSlot;
    }
    let after = this.#tail;
    for (let steps = 0; after !== null && after.info.lastHeartbeat > now; steps++) {
      if (steps === HEARTBEAT_WALK_LIMIT) {
        // Far out of order (the clock went back): append, and let the next
        // cleanup sort everything once instead of walking on every heartbeat.
        after = this.#tail;
        this.#unsorted = true;
        break;
      }
      after = after.hbPrev;
    }
    slot.hbPrev = after;
    if (after === null) {
      slot.hbNext = this.#head;
      this.#head = slot;
    } else {
      slot.hbNext = after.hbNext;
      after.hbNext = slot;
    }
    if (slot.hbNext === null) this.#tail = slot;
    else slot.hbNext.hbPrev = slot;
  }

  /** Takes a slot that is in the list out of it. */
  unlink(slot: Slot): void {
    const prev = slot.hbPrev;
    const next = slot.hbNext;
    if (prev === null) this.#head = next;
    else prev.hbNext = next;
    if (next === null) this.#tail = prev;
    else next.hbPrev = prev;
    slot.hbPrev = null;
    slot.hbNext = null;
  }

  #resort(): void {
    const slots: Slot[] = [];
    for (let s = this.#head; s !== null; s = s.hbNext) slots.push(s);
    slots.sort((a, b) => a.info.lastHeartbeat - b.info.lastHeartbeat);
    let prev: Slot | null = null;
    for (const s of slots) {
      s.hbPrev = prev;
      s.hbNext = null;
      if (prev === null) this.#head = s;
      else prev.hbNext = s;
      prev = s;
    }
    this.#tail = prev;
    this.#unsorted = false;
  }
}
