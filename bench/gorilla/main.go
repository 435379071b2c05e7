// Broadcast server on gorilla/websocket in the shape of its chat example: a hub
// goroutine owns the set of clients and three channels (register, unregister,
// broadcast); each client has a read pump (messages in, to the hub) and a write pump
// (its buffered send channel, 256 messages, out to the connection). A client whose
// channel is full when the hub broadcasts is dropped, as in the example. Unlike the
// chat example, messages keep their own type and boundaries (the example sends text
// and joins queued messages with newlines). Run with GOMAXPROCS=1 to match the other
// single-threaded servers.
//
// Usage: broadcast-gorilla [ADDR]
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/gorilla/websocket"
)

// message is one WebSocket message: its type and payload.
type message struct {
	kind int
	data []byte
}

// client is one connection as the hub sees it.
type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan message
}

// hub broadcasts every message to every registered client.
type hub struct {
	clients    map[*client]bool
	broadcast  chan message
	register   chan *client
	unregister chan *client
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default:
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

// readPump hands every data message to the hub.
func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(64 << 20)
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.hub.broadcast <- message{kind, data}
	}
}

// writePump writes what the hub sends, one message at a time.
func (c *client) writePump() {
	defer c.conn.Close()
	for m := range c.send {
		if err := c.conn.WriteMessage(m.kind, m.data); err != nil {
			return
		}
	}
	c.conn.WriteMessage(websocket.CloseMessage, []byte{})
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func main() {
	addr := "127.0.0.1:9015"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	h := &hub{
		clients:    make(map[*client]bool),
		broadcast:  make(chan message),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
	go h.run()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{hub: h, conn: conn, send: make(chan message, 256)}
		h.register <- c
		go c.writePump()
		go c.readPump()
	})
	log.Printf("broadcast-gorilla listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
