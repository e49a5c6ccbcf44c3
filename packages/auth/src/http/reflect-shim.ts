/*
 * @peculiar/x509 resolves its ASN.1 and crypto providers through tsyringe, which refuses to load
 * unless `Reflect.getMetadata` exists (it reads TypeScript's emitted design:paramtypes). The
 * library itself does not need that emitted metadata, so a small map-backed implementation of the
 * three functions tsyringe calls is enough. A real polyfill (reflect-metadata), if one was loaded
 * first, is left in place.
 */

type Key = unknown;
type Target = object;
type Prop = string | symbol | undefined;

interface ReflectMetadata {
  defineMetadata?: (key: Key, value: unknown, target: Target, prop?: Prop) => void;
  getOwnMetadata?: (key: Key, target: Target, prop?: Prop) => unknown;
  getMetadata?: (key: Key, target: Target, prop?: Prop) => unknown;
}

export function installReflectMetadata(): void {
  const R = Reflect as unknown as ReflectMetadata;
  if (typeof R.getMetadata === 'function' && typeof R.defineMetadata === 'function') return;
  const store = new WeakMap<Target, Map<Prop, Map<Key, unknown>>>();
  const own = (target: Target, prop: Prop, create: boolean): Map<Key, unknown> | undefined => {
    let byProp = store.get(target);
    if (byProp === undefined) {
      if (!create) return undefined;
      byProp = new Map();
      store.set(target, byProp);
    }
    let m = byProp.get(prop);
    if (m === undefined && create) {
      m = new Map();
      byProp.set(prop, m);
    }
    return m;
  };
  R.defineMetadata = (key, value, target, prop) => void own(target, prop, true)!.set(key, value);
  R.getOwnMetadata = (key, target, prop) => own(target, prop, false)?.get(key);
  R.getMetadata = (key, target, prop) => {
    for (let t: Target | null = target; t !== null; t = Object.getPrototypeOf(t) as Target | null) {
      const m = own(t, prop, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
}
