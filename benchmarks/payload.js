// The one response body every variant serves: a ~1 KB JSON object, the same for a given id in
// every server (the runner compares each variant's body against payload(id)).

const DESCRIPTION = 'A sturdy, well-balanced widget machined from a single block of stainless steel. ' +
  'Suitable for indoor and outdoor use, dishwasher safe, and backed by a five-year warranty. ' +
  'Ships flat-packed with mounting hardware, a quick-start guide and a spare gasket. ' +
  'Replacement parts are available for ten years after the last production run.'

/**
 * @param {number} id
 * @returns {object} the item, 1,037-1,070 bytes of JSON for ids up to 99,999 (above the default
 *   compression threshold of 1,024 bytes, so cached entries are stored gzipped by default)
 */
export function payload (id) {
  return {
    id,
    sku: `SKU-${String(id).padStart(8, '0')}`,
    name: `Widget ${id}`,
    description: DESCRIPTION,
    price: { amount: 1999, currency: 'EUR', vatIncluded: true },
    tags: ['hardware', 'tools', 'garden', 'outdoor', 'stainless-steel', 'bestseller'],
    dimensions: { width: 12.5, height: 4.25, depth: 3, unit: 'cm', weight: 0.42, weightUnit: 'kg' },
    stock: { warehouse: 'north-1', available: 42, reserved: 3, restockDate: '2025-02-01', supplier: 'acme' },
    ratings: { average: 4.6, count: 128, distribution: [2, 3, 9, 31, 83] },
    related: [id + 1, id + 2, id + 3, id + 5, id + 8],
    attributes: [
      { name: 'material', value: 'stainless steel' },
      { name: 'finish', value: 'brushed' },
      { name: 'origin', value: 'Portugal' },
      { name: 'certification', value: 'CE, RoHS' },
    ],
    updatedAt: '2025-01-01T00:00:00.000Z',
  }
}

export const PAYLOAD_BYTES = Buffer.byteLength(JSON.stringify(payload(1)))
