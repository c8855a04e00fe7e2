import { EventEmitter } from 'node:events';

/**
 * In-process notice that a container row changed (written through ContainerRepo), so waiters in this process —
 * the long-poll `wait` and the event stream — look again at once instead of at their next poll. Changes made by
 * other processes (API replicas, agents on other hosts) are still found by polling the store.
 */
const buses = new WeakMap<object, EventEmitter>();

/** The bus of one store (keyed by its Kysely instance); emits `change` with the container's uuid. */
export function containerChanges(db: object): EventEmitter {
  let bus = buses.get(db);
  if (!bus) {
    bus = new EventEmitter();
    bus.setMaxListeners(0);
    buses.set(db, bus);
  }
  return bus;
}
