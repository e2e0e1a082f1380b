// The demo's "database": plain Maps, a fresh set per createDatabase() call so that tests (and
// several apps in one process) never share state. Every call waits `delayMs` first, standing in
// for a real query, so that a cache HIT (which never reaches these functions) is visibly faster.

import { setTimeout as sleep } from 'node:timers/promises'

export const PAGE_SIZE = 3

const USERS = [
  { id: 1, name: 'Ada' },
  { id: 2, name: 'Linus' },
]

const WIDGETS = [
  { ownerId: 1, name: 'Sprocket', color: 'red' },
  { ownerId: 1, name: 'Gizmo', color: 'blue' },
  { ownerId: 1, name: 'Doohickey', color: 'green' },
  { ownerId: 1, name: 'Thingamajig', color: 'yellow' },
  { ownerId: 2, name: 'Whatsit', color: 'black' },
  { ownerId: 2, name: 'Gadget', color: 'white' },
]

const COUNTRIES = [
  { code: 'BR', name: 'Brazil', capital: 'Brasília', currency: 'BRL' },
  { code: 'DE', name: 'Germany', capital: 'Berlin', currency: 'EUR' },
  { code: 'FR', name: 'France', capital: 'Paris', currency: 'EUR' },
  { code: 'IN', name: 'India', capital: 'New Delhi', currency: 'INR' },
  { code: 'JP', name: 'Japan', capital: 'Tokyo', currency: 'JPY' },
  { code: 'KE', name: 'Kenya', capital: 'Nairobi', currency: 'KES' },
  { code: 'US', name: 'United States', capital: 'Washington, D.C.', currency: 'USD' },
]

export function createDatabase ({ delayMs = 20 } = {}) {
  const now = () => new Date().toISOString()
  const users = new Map(USERS.map((u) => [u.id, { ...u }]))
  const widgets = new Map(WIDGETS.map((w, i) => [i + 1, { id: i + 1, ...w, updatedAt: now() }]))
  const countries = new Map(COUNTRIES.map((c) => [c.code, { ...c }]))
  let nextWidgetId = widgets.size + 1
  const query = () => sleep(delayMs)

  return {
    async getUser (id) {
      await query()
      const user = users.get(id)
      if (user === undefined) return undefined
      let widgetCount = 0
      for (const w of widgets.values()) if (w.ownerId === id) widgetCount++
      return { ...user, widgetCount }
    },

    async getWidget (id) {
      await query()
      const widget = widgets.get(id)
      return widget && { ...widget }
    },

    /** One page of a user's widgets, oldest first; undefined when the user does not exist. */
    async listWidgets (ownerId, page) {
      await query()
      if (!users.has(ownerId)) return undefined
      const all = [...widgets.values()].filter((w) => w.ownerId === ownerId)
      const items = all.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map((w) => ({ ...w }))
      return { page, pageSize: PAGE_SIZE, total: all.length, items }
    },

    /** undefined when the owner does not exist. */
    async createWidget ({ ownerId, name, color }) {
      await query()
      if (!users.has(ownerId)) return undefined
      const widget = { id: nextWidgetId++, ownerId, name, color, updatedAt: now() }
      widgets.set(widget.id, widget)
      return { ...widget }
    },

    async updateWidget (id, changes) {
      await query()
      const widget = widgets.get(id)
      if (widget === undefined) return undefined
      Object.assign(widget, changes, { updatedAt: now() })
      return { ...widget }
    },

    async deleteWidget (id) {
      await query()
      return widgets.delete(id)
    },

    async listCountries () {
      await query()
      return [...countries.values()].map((c) => ({ ...c }))
    },

    async getCountry (code) {
      await query()
      const country = countries.get(code)
      return country && { ...country }
    },

    async updateCountry (code, changes) {
      await query()
      const country = countries.get(code)
      if (country === undefined) return undefined
      Object.assign(country, changes)
      return { ...country }
    },
  }
}
