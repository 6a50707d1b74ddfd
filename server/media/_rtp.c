/* server.media._rtp: the per-packet, per-viewer write of the forwarding path, in C.
 *
 * What it does is what server/media/rtpout.py's PyWriter does (the reference, and the
 * fallback where this module was not built): put an RTP header in front of a payload,
 * protect the packet with the connection's libsrtp session, send it on the ICE pair's UDP
 * socket -- and, for video, keep it for a retransmission. Why by hand: that path runs once
 * per packet per listener or viewer (a 720p camera to 300 viewers is 54,000 writes a
 * second), and in Python its interpreter, allocations and garbage collection cost about
 * half of the CPU it took (perf, docs/benchmarks.md "The write path in C"); no library
 * offers "SRTP-protect and send" below Python. libsrtp is not linked here: the caller
 * passes the address of pylibsrtp's own srtp_protect and of each session's srtp_t (libsrtp
 * 2's API: srtp_protect(srtp_t, void *packet, int *length)), so one libsrtp runs in the
 * process, the one aiortc uses for its RTCP on the same sessions.
 *
 * Nothing here blocks or takes a lock: called on the event loop's thread with the GIL
 * held, as the Python code it replaces. A send that would block (a full socket buffer) is
 * a dropped packet, as a router would drop it, and counted.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*protect_fn)(void *session, void *packet, int *length);

#define ROOM 1484    /* the largest packet before protection (pylibsrtp's 1,500 less a tag) */
#define SPACE 1600   /* the stack buffer: ROOM plus libsrtp's largest trailer, with margin */
#define PREFIX 64    /* header extension bytes after the fixed header (aiortc writes ~8) */

typedef struct {
    uint16_t seq;
    uint8_t second;
    uint8_t used;
    uint32_t ts;
    unsigned long long at;
    PyObject *payload;
} Kept;

typedef struct {
    PyObject_HEAD
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    void *session;       /* srtp_t */
    protect_fn protect;
    PyObject *keep;      /* what must outlive the binding: the socket, the pylibsrtp session */
    uint8_t first;       /* 0x80, or 0x90 with header extensions */
    uint8_t prefix[PREFIX];
    Py_ssize_t prefix_len;
    unsigned long long sent, octets, dropped;
    int error;           /* errno of the last failed send, or -1: libsrtp refused; 0: none */
    Kept *kept;
    Py_ssize_t history;  /* a power of two, or 0 */
    /* A listening track (Writer.opus): relay.Outlet's re-timing and DirectSender's numbering. */
    PyObject *pid;       /* the listener: its own microphone is never sent back */
    PyObject *pub;       /* the microphone forwarded last, or NULL */
    uint32_t last_in, last_out, last_ts, origin, ssrc;
    double last_at;
    uint16_t seq;
    uint8_t pt;
    int countdown, every;
    /* A viewer's tile (Writer.vp8): forward.VideoOutlet's re-basing of the layer it shows. */
    uint16_t base, seq_off, pic_off, last_seq, last_pic;
    uint32_t ts_off;
    uint8_t tl0_off, last_tl0;
} Writer;

static void writer_forget(Writer *self) {
    if (self->kept) {
        for (Py_ssize_t i = 0; i < self->history; i++)
            Py_CLEAR(self->kept[i].payload);
    }
}

static int Writer_init(Writer *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"history", NULL};
    Py_ssize_t history = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", names, &history))
        return -1;
    if (history < 0 || (history & (history - 1))) {
        PyErr_SetString(PyExc_ValueError, "history must be 0 or a power of two");
        return -1;
    }
    writer_forget(self);
    PyMem_Free(self->kept);
    self->kept = NULL;
    self->history = history;
    if (history) {
        self->kept = PyMem_Calloc((size_t)history, sizeof(Kept));
        if (!self->kept) {
            PyErr_NoMemory();
            return -1;
        }
    }
    self->fd = -1;
    return 0;
}

static int Writer_traverse(Writer *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    Py_VISIT(self->pid);
    Py_VISIT(self->pub);
    /* Kept payloads are bytes: they hold no references, so no cycle runs through them. */
    return 0;
}

static int Writer_clear(Writer *self) {
    Py_CLEAR(self->keep);
    Py_CLEAR(self->pid);
    Py_CLEAR(self->pub);
    writer_forget(self);
    return 0;
}

static void Writer_dealloc(Writer *self) {
    PyObject_GC_UnTrack(self);
    Writer_clear(self);
    PyMem_Free(self->kept);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bind(sock, host, port, session_ptr, protect_ptr, keep, first, prefix) */
static PyObject *Writer_bind(Writer *self, PyObject *args) {
    PyObject *sock, *keep;
    const char *host;
    int port, first;
    unsigned long long session, protect;
    Py_buffer prefix;
    if (!PyArg_ParseTuple(args, "OsiKKOiy*", &sock, &host, &port, &session, &protect, &keep,
                          &first, &prefix))
        return NULL;
    if (prefix.len > PREFIX) {
        PyBuffer_Release(&prefix);
        PyErr_SetString(PyExc_ValueError, "header extensions longer than 64 bytes");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    struct addrinfo hints = {0}, *found = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0 || !found || found->ai_addrlen > sizeof self->addr) {
        if (found)
            freeaddrinfo(found);
        PyBuffer_Release(&prefix);
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
        return NULL;
    }
    memcpy(&self->addr, found->ai_addr, found->ai_addrlen);
    self->addrlen = found->ai_addrlen;
    freeaddrinfo(found);
    memcpy(self->prefix, prefix.buf, (size_t)prefix.len);
    self->prefix_len = prefix.len;
    PyBuffer_Release(&prefix);
    self->fd = fd;
    self->session = (void *)(uintptr_t)session;
    self->protect = (protect_fn)(uintptr_t)protect;
    self->first = (uint8_t)first;
    self->error = 0;
    Py_INCREF(keep);
    Py_XSETREF(self->keep, keep);
    Py_RETURN_NONE;
}

static PyObject *Writer_unbind(Writer *self, PyObject *unused) {
    self->fd = -1;
    self->session = NULL;
    Py_CLEAR(self->keep);
    Py_RETURN_NONE;
}

/* One packet out: 1 sent, 0 not (dropped: too large, a full buffer, unbound), -1 failed
 * (the binding is stale: libsrtp refused or the socket is gone; self->error says which). */
static int writer_send(Writer *self, uint8_t second, uint16_t seq, uint32_t ts, uint32_t ssrc,
                       const uint8_t *a, Py_ssize_t a_len, const uint8_t *b, Py_ssize_t b_len) {
    uint8_t packet[SPACE];
    if (self->fd < 0 || !self->session)
        return 0;
    Py_ssize_t size = 12 + self->prefix_len + a_len + b_len;
    if (size > ROOM)
        return 0;
    packet[0] = self->first;
    packet[1] = second;
    packet[2] = (uint8_t)(seq >> 8);
    packet[3] = (uint8_t)seq;
    packet[4] = (uint8_t)(ts >> 24);
    packet[5] = (uint8_t)(ts >> 16);
    packet[6] = (uint8_t)(ts >> 8);
    packet[7] = (uint8_t)ts;
    packet[8] = (uint8_t)(ssrc >> 24);
    packet[9] = (uint8_t)(ssrc >> 16);
    packet[10] = (uint8_t)(ssrc >> 8);
    packet[11] = (uint8_t)ssrc;
    uint8_t *at = packet + 12;
    memcpy(at, self->prefix, (size_t)self->prefix_len);
    at += self->prefix_len;
    memcpy(at, a, (size_t)a_len);
    at += a_len;
    if (b_len)
        memcpy(at, b, (size_t)b_len);
    int length = (int)size;
    if (self->protect(self->session, packet, &length)) {
        self->error = -1;
        return -1;
    }
    if (sendto(self->fd, packet, (size_t)length, MSG_DONTWAIT, (struct sockaddr *)&self->addr,
               self->addrlen) < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EINTR || e == ECONNREFUSED ||
            e == EHOSTUNREACH || e == ENETUNREACH)
            return 0; /* the network's loss, not the binding's */
        self->error = e;
        return -1;
    }
    return 1;
}

static int arg_u32(PyObject *o, uint32_t *out) {
    unsigned long v = PyLong_AsUnsignedLongMask(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* write(second, seq, ts, ssrc, payload) -> bool: one packet, nothing counted or kept
 * (a retransmission). Raises nothing for a stale binding: False, and .error is set. */
static PyObject *Writer_write(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t second, seq, ts, ssrc;
    Py_buffer payload;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write(second, seq, ts, ssrc, payload)");
        return NULL;
    }
    if (arg_u32(args[0], &second) || arg_u32(args[1], &seq) || arg_u32(args[2], &ts) ||
        arg_u32(args[3], &ssrc))
        return NULL;
    if (PyObject_GetBuffer(args[4], &payload, PyBUF_SIMPLE))
        return NULL;
    int r = writer_send(self, (uint8_t)second, (uint16_t)seq, ts, ssrc, NULL, 0, payload.buf,
                        payload.len);
    PyBuffer_Release(&payload);
    return PyBool_FromLong(r > 0);
}

/* forward(second, seq, ts, ssrc, payload) -> bool: write one packet of the stream, count
 * it, and keep it (with a history) for retransmission. */
static PyObject *Writer_forward(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t second, seq, ts, ssrc;
    if (nargs != 5 || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "forward(second, seq, ts, ssrc, payload: bytes)");
        return NULL;
    }
    if (arg_u32(args[0], &second) || arg_u32(args[1], &seq) || arg_u32(args[2], &ts) ||
        arg_u32(args[3], &ssrc))
        return NULL;
    PyObject *payload = args[4];
    Py_ssize_t len = PyBytes_GET_SIZE(payload);
    int r = writer_send(self, (uint8_t)second, (uint16_t)seq, ts, ssrc, NULL, 0,
                        (const uint8_t *)PyBytes_AS_STRING(payload), len);
    if (r <= 0) {
        self->dropped++;
        Py_RETURN_FALSE;
    }
    if (self->history) {
        Kept *k = &self->kept[seq & (uint32_t)(self->history - 1)];
        k->seq = (uint16_t)seq;
        k->second = (uint8_t)second;
        k->ts = ts;
        k->at = self->sent;
        k->used = 1;
        Py_INCREF(payload);
        Py_XSETREF(k->payload, payload);
    }
    self->sent++;
    self->octets += (unsigned long long)len;
    Py_RETURN_TRUE;
}

/* kept(seq) -> (second, ts, payload, sent then) | None */
static PyObject *Writer_kept(Writer *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (!self->history)
        Py_RETURN_NONE;
    Kept *k = &self->kept[(unsigned long)seq & (unsigned long)(self->history - 1)];
    if (!k->used || k->seq != (uint16_t)seq || !k->payload)
        Py_RETURN_NONE;
    return Py_BuildValue("(IIOK)", (unsigned)k->second, (unsigned)k->ts, k->payload, k->at);
}

#define SAMPLES 960 /* relay.SAMPLES: one 20 ms Opus frame at 48 kHz */

/* listen(pid, pt, ssrc, seq, origin, every): make this writer a listening track. */
static PyObject *Writer_listen(Writer *self, PyObject *args) {
    PyObject *pid;
    unsigned int pt, ssrc, seq, origin;
    int every;
    if (!PyArg_ParseTuple(args, "OIIIIi", &pid, &pt, &ssrc, &seq, &origin, &every))
        return NULL;
    if (every < 1) {
        PyErr_SetString(PyExc_ValueError, "every must be at least 1");
        return NULL;
    }
    Py_INCREF(pid);
    Py_XSETREF(self->pid, pid);
    self->pt = (uint8_t)(pt & 0x7F);
    self->ssrc = ssrc;
    self->seq = (uint16_t)seq;
    self->origin = origin;
    self->every = every;
    self->countdown = 1; /* the first packet sent updates the sender's report */
    Py_RETURN_NONE;
}

/* opus(pub, pid, ts, payload, now) -> 0 not sent (the listener's own microphone, a late
 * or repeated frame, or dropped), 1 sent, 2 sent and the sender's report is due (every
 * `every` packets: DirectSender._stats, and a check of the binding), 3 not sent and
 * nothing changed: the binding is missing or stale (bind, then call again). One frame of a
 * source for one listening track: what relay.Outlet.feed then DirectSender.push do. */
static PyObject *Writer_opus(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "opus(pub, pid, ts, payload: bytes, now)");
        return NULL;
    }
    PyObject *pub = args[0];
    if (self->pid) {
        int own = PyObject_RichCompareBool(args[1], self->pid, Py_EQ);
        if (own < 0)
            return NULL;
        if (own)
            return PyLong_FromLong(0);
    }
    if (self->fd < 0 || !self->session || self->error)
        return PyLong_FromLong(3); /* nothing changed: bind, then call again */
    uint32_t ts;
    if (arg_u32(args[2], &ts))
        return NULL;
    double now = PyFloat_AsDouble(args[4]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    uint32_t step;
    int same = 0;
    if (self->pub) {
        same = PyObject_RichCompareBool(pub, self->pub, Py_EQ);
        if (same < 0)
            return NULL;
    }
    if (same) {
        step = ts - self->last_in;
        if (step == 0 || step >= 0x80000000u)
            return PyLong_FromLong(0); /* late or repeated: the stream has moved on */
    } else {
        long elapsed = 1;
        if (self->pub && PyObject_IsTrue(self->pub)) {
            elapsed = (long)nearbyint((now - self->last_at) * 48000.0 / SAMPLES);
            if (elapsed < 1)
                elapsed = 1;
        }
        step = (uint32_t)(SAMPLES * elapsed);
        Py_INCREF(pub);
        Py_XSETREF(self->pub, pub);
    }
    self->last_in = ts;
    self->last_out += step;
    self->last_at = now;
    /* The marker bit starts a talkspurt (RFC 3551 4.1): a new voice or after a pause. */
    uint8_t second = (uint8_t)((step > SAMPLES ? 0x80 : 0) | self->pt);
    uint16_t seq = ++self->seq; /* taken even if the packet is dropped: a gap the listener sees */
    uint32_t out = self->origin + self->last_out;
    PyObject *payload = args[3];
    int r = writer_send(self, second, seq, out, self->ssrc, NULL, 0,
                        (const uint8_t *)PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    if (r <= 0) {
        self->dropped++;
        return PyLong_FromLong(r < 0 ? 3 : 0);
    }
    self->last_ts = out;
    self->sent++;
    self->octets += (unsigned long long)PyBytes_GET_SIZE(payload);
    if (--self->countdown <= 0) {
        self->countdown = self->every;
        return PyLong_FromLong(2);
    }
    return PyLong_FromLong(1);
}

/* vp8(rtp, ts, marker, payload, picture_id_at, long_id, picture_id, tl0_at, tl0picidx, now)
 * -> 0 not sent (older than the layer's switch, or dropped), 1 sent, 2 sent and the sender's
 * report is due, 3 not sent and nothing changed (bind, then call again). One packet of the
 * layer this viewer's tile shows now: forward.VideoOutlet.feed's steady state, then
 * vhook.VideoSender.write. picture_id / tl0picidx are -1 where the descriptor has none;
 * the *_at offsets are 0 then. The payload written and kept for RTX carries the viewer's
 * PictureID and TL0PICIDX (vp8.rewrite). */
static PyObject *Writer_vp8(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10 || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "vp8(rtp, ts, marker, payload: bytes, pic_at, long_id, pic, tl0_at, tl0, now)");
        return NULL;
    }
    if (self->fd < 0 || !self->session || self->error)
        return PyLong_FromLong(3);
    uint32_t rtp, ts;
    if (arg_u32(args[0], &rtp) || arg_u32(args[1], &ts))
        return NULL;
    int marker = PyObject_IsTrue(args[2]);
    long pic_at = PyLong_AsLong(args[4]);
    int long_id = PyObject_IsTrue(args[5]);
    long pic = PyLong_AsLong(args[6]);
    long tl0_at = PyLong_AsLong(args[7]);
    long tl0 = PyLong_AsLong(args[8]);
    double now = PyFloat_AsDouble(args[9]);
    if (marker < 0 || long_id < 0 || PyErr_Occurred())
        return NULL;
    if ((uint16_t)(rtp - self->base) >= 0x8000)
        return PyLong_FromLong(0); /* older than the switch (a late retransmission) */
    uint16_t seq = (uint16_t)(rtp + self->seq_off);
    uint32_t out_ts = ts + self->ts_off;
    PyObject *payload = args[3];
    Py_ssize_t len = PyBytes_GET_SIZE(payload);
    PyObject *written = payload;
    Py_INCREF(written);
    if (pic >= 0 || tl0 >= 0) {
        uint16_t new_pic = (uint16_t)((pic + self->pic_off) & 0x7FFF);
        uint8_t new_tl0 = (uint8_t)((tl0 + self->tl0_off) & 0xFF);
        int rewrite = (self->pic_off || self->tl0_off) &&
                      ((pic >= 0 && pic_at > 0) || (tl0 >= 0 && tl0_at > 0));
        if (rewrite) {
            if ((pic >= 0 && pic_at + (long_id ? 1 : 0) >= len) || (tl0 >= 0 && tl0_at >= len)) {
                Py_DECREF(written);
                PyErr_SetString(PyExc_ValueError, "descriptor offsets beyond the payload");
                return NULL;
            }
            Py_SETREF(written, PyBytes_FromStringAndSize(PyBytes_AS_STRING(payload), len));
            if (!written)
                return NULL;
            uint8_t *out = (uint8_t *)PyBytes_AS_STRING(written);
            if (pic >= 0 && pic_at > 0) {
                if (long_id) {
                    out[pic_at] = (uint8_t)(0x80 | ((new_pic >> 8) & 0x7F));
                    out[pic_at + 1] = (uint8_t)(new_pic & 0xFF);
                } else {
                    out[pic_at] = (uint8_t)(new_pic & 0x7F);
                }
            }
            if (tl0 >= 0 && tl0_at > 0)
                out[tl0_at] = new_tl0;
        }
        if (pic >= 0)
            self->last_pic = new_pic;
        if (tl0 >= 0)
            self->last_tl0 = new_tl0;
    }
    if ((uint16_t)(seq - self->last_seq) < 0x8000)
        self->last_seq = seq;
    if (out_ts != self->last_ts) {
        self->last_ts = out_ts;
        self->last_at = now;
    }
    uint8_t second = (uint8_t)((marker ? 0x80 : 0) | self->pt);
    int r = writer_send(self, second, seq, out_ts, self->ssrc, NULL, 0,
                        (const uint8_t *)PyBytes_AS_STRING(written), len);
    if (r <= 0) {
        Py_DECREF(written);
        self->dropped++;
        return PyLong_FromLong(0);
    }
    if (self->history) {
        Kept *k = &self->kept[seq & (uint32_t)(self->history - 1)];
        k->seq = seq;
        k->second = second;
        k->ts = out_ts;
        k->at = self->sent;
        k->used = 1;
        Py_XSETREF(k->payload, written); /* the reference taken above */
    } else {
        Py_DECREF(written);
    }
    self->sent++;
    self->octets += (unsigned long long)len;
    if (--self->countdown <= 0) {
        self->countdown = self->every;
        return PyLong_FromLong(2);
    }
    return PyLong_FromLong(1);
}

static PyObject *Writer_get_pub(Writer *self, void *closure) {
    PyObject *pub = self->pub ? self->pub : Py_None;
    Py_INCREF(pub);
    return pub;
}

static PyObject *Writer_get_bound(Writer *self, void *closure) {
    return PyBool_FromLong(self->fd >= 0 && self->session != NULL);
}

static PyMethodDef Writer_methods[] = {
    {"bind", (PyCFunction)Writer_bind, METH_VARARGS,
     "bind(sock, host, port, session_ptr, protect_ptr, keep, first, prefix)"},
    {"unbind", (PyCFunction)Writer_unbind, METH_NOARGS, "Forget the socket and the session."},
    {"write", (PyCFunction)(void (*)(void))Writer_write, METH_FASTCALL,
     "write(second, seq, ts, ssrc, payload) -> bool: one packet, not counted or kept."},
    {"forward", (PyCFunction)(void (*)(void))Writer_forward, METH_FASTCALL,
     "forward(second, seq, ts, ssrc, payload) -> bool: write, count, keep."},
    {"listen", (PyCFunction)Writer_listen, METH_VARARGS,
     "listen(pid, pt, ssrc, seq, origin, every): make this writer a listening track."},
    {"opus", (PyCFunction)(void (*)(void))Writer_opus, METH_FASTCALL,
     "opus(pub, pid, ts, payload, now) -> 0 not sent, 1 sent, 2 sent + report due, 3 rebind."},
    {"vp8", (PyCFunction)(void (*)(void))Writer_vp8, METH_FASTCALL,
     "vp8(rtp, ts, marker, payload, pic_at, long_id, pic, tl0_at, tl0, now) -> 0/1/2/3."},
    {"kept", (PyCFunction)Writer_kept, METH_O,
     "kept(seq) -> (second, ts, payload, sent then) or None."},
    {NULL}};

static PyMemberDef Writer_members[] = {
    {"sent", T_ULONGLONG, offsetof(Writer, sent), 0, "packets forwarded"},
    {"octets", T_ULONGLONG, offsetof(Writer, octets), 0, "payload bytes forwarded"},
    {"dropped", T_ULONGLONG, offsetof(Writer, dropped), 0, "packets not forwarded"},
    {"error", T_INT, offsetof(Writer, error), 0, "errno of the last failed send (-1: SRTP)"},
    {"history", T_PYSSIZET, offsetof(Writer, history), READONLY, "packets kept"},
    {"seq", T_USHORT, offsetof(Writer, seq), 0, "a listening track: the last sequence number"},
    {"origin", T_UINT, offsetof(Writer, origin), 0, "a listening track: its first timestamp"},
    {"last_in", T_UINT, offsetof(Writer, last_in), 0, "the source timestamp forwarded last"},
    {"last_out", T_UINT, offsetof(Writer, last_out), 0, "the track's timestamp (less origin)"},
    {"last_ts", T_UINT, offsetof(Writer, last_ts), 0, "the RTP timestamp written last"},
    {"last_at", T_DOUBLE, offsetof(Writer, last_at), 0, "when the last frame came (monotonic)"},
    {"pt", T_UBYTE, offsetof(Writer, pt), 0, "the payload type written (a tile: its layer's)"},
    {"ssrc", T_UINT, offsetof(Writer, ssrc), 0, "the SSRC written"},
    {"every", T_INT, offsetof(Writer, every), 0, "packets between the sender's reports"},
    {"countdown", T_INT, offsetof(Writer, countdown), 0, "packets until the next report"},
    {"base", T_USHORT, offsetof(Writer, base), 0, "a tile: the first packet of its layer"},
    {"seq_off", T_USHORT, offsetof(Writer, seq_off), 0, "a tile: sequence number offset"},
    {"ts_off", T_UINT, offsetof(Writer, ts_off), 0, "a tile: timestamp offset"},
    {"pic_off", T_USHORT, offsetof(Writer, pic_off), 0, "a tile: PictureID offset"},
    {"tl0_off", T_UBYTE, offsetof(Writer, tl0_off), 0, "a tile: TL0PICIDX offset"},
    {"last_seq", T_USHORT, offsetof(Writer, last_seq), 0, "a tile: the last sequence number"},
    {"last_pic", T_USHORT, offsetof(Writer, last_pic), 0, "a tile: the last PictureID"},
    {"last_tl0", T_UBYTE, offsetof(Writer, last_tl0), 0, "a tile: the last TL0PICIDX"},
    {NULL}};

static PyGetSetDef Writer_getset[] = {
    {"bound", (getter)Writer_get_bound, NULL, "whether a socket and a session are bound", NULL},
    {"pub", (getter)Writer_get_pub, NULL, "a listening track: the microphone forwarded last", NULL},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._rtp.Writer",
    .tp_doc = "One outgoing RTP stream: header, SRTP, sendto (server/media/rtpout.py).",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_traverse = (traverseproc)Writer_traverse,
    .tp_clear = (inquiry)Writer_clear,
    .tp_methods = Writer_methods,
    .tp_members = Writer_members,
    .tp_getset = Writer_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtp", "The forwarding path's RTP write, in C (server/media/rtpout.py).",
    -1, NULL};

PyMODINIT_FUNC PyInit__rtp(void) {
    if (PyType_Ready(&WriterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
