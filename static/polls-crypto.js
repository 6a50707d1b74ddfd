// The voter's side of a secret ballot, byte for byte what server/blind.py and server/seal.py
// do: a token chain, RSA blinding with a factor that never leaves this device, unblinding,
// checking the node's signature, sealing the ballot to the poll's key (ECDH P-256, HKDF,
// AES-GCM) and its tracker. docs/voting.md.
"use strict";

const BallotCrypto = (() => {
  const enc = new TextEncoder();
  const CHAIN = 8;
  const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const fromHex = (hex) => Uint8Array.from(hex.match(/../g) || [], (x) => parseInt(x, 16));
  const big = (hex) => BigInt(`0x${hex}`);
  const hex = (n) => n.toString(16);

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  function modpow(b, e, m) {
    let r = 1n;
    b %= m;
    while (e > 0n) {
      if (e & 1n) r = (r * b) % m;
      b = (b * b) % m;
      e >>= 1n;
    }
    return r;
  }

  function modinv(a, m) {
    let [r0, r1] = [((a % m) + m) % m, m];
    let [s0, s1] = [1n, 0n];
    while (r1 !== 0n) {
      const q = r0 / r1;
      [r0, r1] = [r1, r0 - q * r1];
      [s0, s1] = [s1, s0 - q * s1];
    }
    if (r0 !== 1n) throw new Error("not invertible");
    return ((s0 % m) + m) % m;
  }

  const byteLen = (n) => Math.ceil(hex(n).length / 2);

  async function mgf1(data, length) {
    const parts = [];
    let have = 0;
    for (let counter = 0; have < length; counter++) {
      const block = new Uint8Array(data.length + 4);
      block.set(data);
      new DataView(block.buffer).setUint32(data.length, counter);
      const digest = await sha256(block);
      parts.push(digest);
      have += digest.length;
    }
    const out = new Uint8Array(have);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out.slice(0, length);
  }

  async function fdh(n, data) {
    return big(toHex(await mgf1(data, byteLen(n)))) % n;
  }

  const message = (room, poll, weight, token) =>
    enc.encode(`hemicycle.ballot.v1|${room}|${poll}|${weight}|${token}`);

  async function chain(seed) {
    const values = [seed];
    for (let i = 0; i < CHAIN; i++) values.push(toHex(await sha256(fromHex(values.at(-1)))));
    return values.reverse();
  }

  function base32(bytes) {
    let bits = 0, value = 0, out = "";
    for (const b of bytes) {
      value = (value << 8) | b;
      bits += 8;
      while (bits >= 5) {
        out += B32[(value >>> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    return out;
  }

  // A sealed ballot's tracker: base32 of SHA-256 of its bytes, 4-4-4-4 (server/blind.py tracker).
  async function tracker(sealedHex) {
    const code = base32(await sha256(fromHex(sealedHex))).slice(0, 16);
    return code.match(/..../g).join("-");
  }

  const PAD = 512;

  // The ballot {token, sig, w, choice, rev, reveal} sealed to the poll's public key (hex of
  // the uncompressed P-256 point): E ‖ nonce ‖ AES-GCM(padded JSON), as hex (server/seal.py).
  async function seal(publicHex, room, poll, ballot) {
    const label = enc.encode(`hemicycle.seal.v1|${room}|${poll}`);
    const peer = await crypto.subtle.importKey("raw", fromHex(publicHex),
      { name: "ECDH", namedCurve: "P-256" }, false, []);
    const mine = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
    const eph = new Uint8Array(await crypto.subtle.exportKey("raw", mine.publicKey));
    const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, mine.privateKey, 256);
    const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const key = await crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: eph, info: label },
      ikm, { name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    // Sorted keys and no spaces, as Python's json.dumps(sort_keys=True, separators=(",", ":")).
    const sorted = Object.fromEntries(Object.keys(ballot).sort().map((k) => [k, ballot[k]]));
    const json = enc.encode(JSON.stringify(sorted));
    const plain = new Uint8Array(Math.ceil(json.length / PAD) * PAD).fill(0x20);
    plain.set(json);
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const body = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: label }, key, plain));
    const out = new Uint8Array(eph.length + nonce.length + body.length);
    out.set(eph); out.set(nonce, eph.length); out.set(body, eph.length + nonce.length);
    return toHex(out);
  }

  function randomBelow(n) {
    for (;;) {
      const r = big(toHex(crypto.getRandomValues(new Uint8Array(byteLen(n) + 8)))) % n;
      if (r > 1n) return r;
    }
  }

  const randomSeed = () => toHex(crypto.getRandomValues(new Uint8Array(32)));

  // A fresh ballot: the seed of its token chain and its blinding factor, both secret.
  function fresh(key) {
    return { seed: randomSeed(), r: hex(randomBelow(big(key.n))) };
  }

  async function blinded(ballot, key, room, poll, weight) {
    const n = big(key.n), e = BigInt(key.e);
    const token = (await chain(ballot.seed))[0];
    const m = await fdh(n, message(room, poll, weight, token));
    return hex((m * modpow(big(ballot.r), e, n)) % n);
  }

  // Unblind the node's signature and check it; returns the signature (hex) or throws.
  async function unblind(ballot, key, room, poll, weight, signed) {
    const n = big(key.n), e = BigInt(key.e);
    const s = (big(signed) * modinv(big(ballot.r), n)) % n;
    const token = (await chain(ballot.seed))[0];
    const m = await fdh(n, message(room, poll, weight, token));
    if (modpow(s, e, n) !== m) throw new Error("the node's signature does not verify");
    return hex(s);
  }

  return { chain, tracker, seal, fresh, blinded, unblind, CHAIN };
})();

window.BallotCrypto = BallotCrypto;
