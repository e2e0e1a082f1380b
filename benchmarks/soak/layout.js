// The hot data set, shared by the truth, the instances and the driver so that a PATCH's
// `listId` and a list's members agree everywhere.

export const ITEM_COUNT = 20
export const LIST_COUNT = 4
const PER_LIST = ITEM_COUNT / LIST_COUNT

export const listOf = (itemId) => Math.ceil(itemId / PER_LIST)

export const itemsOf = (listId) => Array.from({ length: PER_LIST }, (_, i) => (listId - 1) * PER_LIST + i + 1)
