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

/** Resolves after `ms`, or earlier when this process changes the container `uuid`. */
export function changeOrTimeout(db: object, uuid: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const bus = containerChanges(db);
    const done = () => {
      clearTimeout(timer);
      bus.off('change', onChange);
      resolve();
    };
    const onChange = (changed: string) => {
      if (changed === uuid) done();
    };
    const timer = setTimeout(done, ms);
    bus.on('change', onChange);
  });
}
